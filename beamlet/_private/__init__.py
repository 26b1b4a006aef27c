"""The core shared by every process role: ids, wire protocol, serialization, config.

Nothing in here imports a role package (gcs, raylet, scheduler, worker) or the
public API; a test enforces it (tests/test_layering.py).
"""
