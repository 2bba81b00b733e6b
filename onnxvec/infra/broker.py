"""Handing work to Celery workers over Redis: the app's configuration, enqueueing, queue depth.

Messages carry document ids only. They may be lost (Redis flushed) or delivered twice (a worker
killed before its ack): Postgres claims make a duplicate harmless, the reconciler replaces a loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from celery import Celery

from onnxvec.config import Settings

EMBED_TASK = "onnxvec.embed_documents"
RECONCILE_TASK = "onnxvec.reconcile"
SYNC_TASK = "onnxvec.sync_tables"
BUILD_TASK = "onnxvec.build_version"
QUEUE = "onnxvec"


def broker_url(redis_url: str) -> str:
    """Celery/kombu spell a unix socket redis+socket://, redis-py spells it unix://."""
    return redis_url.replace("unix://", "redis+socket://", 1) if redis_url.startswith("unix://") else redis_url


def make_app(settings: Settings, redis_url: str) -> Celery:
    app = Celery("onnxvec", broker=broker_url(redis_url))
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,  # a killed worker's message is redelivered, not lost
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # progress lives in Postgres
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        beat_schedule={
            "reconcile": {"task": RECONCILE_TASK, "schedule": settings.reconcile_seconds},
            "sync": {
                "task": SYNC_TASK,
                "schedule": settings.sync_seconds,
                "options": {"expires": settings.sync_seconds},
            },
        },
    )
    return app


def enqueue(app: Celery, ids: Sequence[int], per_task: int) -> int:
    """Send ids in messages of `per_task`; returns how many messages were sent."""
    sent = 0
    for start in range(0, len(ids), per_task):
        app.send_task(EMBED_TASK, args=[list(ids[start : start + per_task])])
        sent += 1
    return sent


def enqueue_build(app: Celery, version_id: int, cursor: int = 0) -> None:
    """One batch of a version build (the documents after `cursor`), behind whatever ingest is already
    queued: fresh documents come first."""
    app.send_task(BUILD_TASK, args=[version_id, cursor])


def queue_depth(redis_url: str) -> int:
    """Messages waiting in the queue (not counting those a worker holds unacknowledged)."""
    return int(redis.Redis.from_url(redis_url, socket_connect_timeout=2).llen(QUEUE))
