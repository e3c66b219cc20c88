"""Celery: the app factory, the deliver task, enqueueing, tuning, the worker's service loops."""
