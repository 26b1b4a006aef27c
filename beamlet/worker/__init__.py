"""Worker processes, and the core worker shared by drivers and workers."""
