"""gateway/ext_proc package."""
