"""Celery worker: tasks and reconciler over the onnxvec core library (issue 3)."""
