"""Celery workers: thin wrappers over lor functions (no queries are built here)."""
