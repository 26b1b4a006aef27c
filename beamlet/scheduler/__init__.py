"""The global scheduler and monitor (head node)."""
