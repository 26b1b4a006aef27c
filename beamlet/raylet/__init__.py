"""The raylet: one process per node — local scheduler, object store, worker pool."""
