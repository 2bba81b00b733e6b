"""Celery worker: tasks and the reconciler over the onnxvec core library."""
