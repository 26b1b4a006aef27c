"""The GCS: cluster state in a real Redis server.  keys.py is its schema."""
