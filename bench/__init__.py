"""dagen's benchmark harness (never shipped in the wheel). Run: ``python -m bench``."""
