"""Celery tasks: a thin shell over onnxvec.ingest.pipeline. Transient failures retry with backoff."""

from __future__ import annotations

import contextlib
import logging
import time

import psycopg
import redis
import sqlalchemy.exc
from celery.signals import worker_process_init

from onnxvec.config import get_settings
from onnxvec.infra import broker, db
from onnxvec.ingest import reembed, register, sync
from onnxvec.ingest.pipeline import Outcome, Pipeline
from onnxvec.storage import table_sources, versions

log = logging.getLogger(__name__)
settings = get_settings()
if settings.database_url is None or settings.redis_url is None:  # set by `python -m worker`
    raise RuntimeError("start workers with `onnxvec worker`, or set DATABASE_URL and REDIS_URL")
app = broker.make_app(settings, settings.redis_url)
TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,
    redis.ConnectionError,
)
MAX_BACKOFF_SECONDS = 8  # a restarted database sees its work resume within seconds
SYNC_BUDGET_SECONDS = 5  # a sync run yields its process to embedding after this; the next run goes on
MAX_SOURCE_REST_SECONDS = 30  # a failing source is tried again after 2, 4, ... up to this many seconds
_resting: dict[int, tuple[float, int]] = {}  # source id -> (not before this monotonic time, failures in a row)
_pipeline: Pipeline | None = None


def pipeline() -> Pipeline:
    """This process's pipeline (one database pool, models loaded once); created after the fork."""
    global _pipeline
    if _pipeline is None:
        _pipeline = Pipeline(settings, db.make_engine(settings.database_url))
    return _pipeline


@worker_process_init.connect
def _load_model(**_: object) -> None:
    pipeline().embedder(settings.embedding_model)


@app.task(name=broker.EMBED_TASK, bind=True, max_retries=None)
def embed_documents(self, ids: list[int]) -> dict:
    try:
        outcome: Outcome = pipeline().process(ids)
    except TRANSIENT as exc:
        log.warning("transient error on %d documents, retrying: %s", len(ids), exc)
        with contextlib.suppress(TRANSIENT):  # the database is down: the claims expire with their lease instead
            pipeline().release(ids, f"retrying after: {exc}")
        countdown = min(MAX_BACKOFF_SECONDS, 2 ** min(self.request.retries, 6))
        raise self.retry(exc=exc, countdown=countdown) from exc
    log.info("embedded %s", outcome)
    return outcome.__dict__


@app.task(name=broker.SYNC_TASK)
def sync_tables() -> int:
    """Apply the table sources' changes (a batch per transaction, for up to SYNC_BUDGET_SECONDS) and
    send what changed to be embedded. Beat runs it every ONNXVEC_SYNC_SECONDS; the queue tables and
    the polling cursors are the truth, so a lost run or a flushed Redis only delays the work. A source
    that fails (its database down, a dropped column) rests a while, longer each time, so that it never
    holds up the others nor this process's embedding."""
    started, applied = time.monotonic(), 0
    db = pipeline().db
    with db.connect() as conn:
        visit = [s for s in table_sources.to_visit(conn) if _resting.get(s, (0.0, 0))[0] <= started]
    for source_id in visit:
        try:
            with db.connect() as conn:
                source = table_sources.get_by_id(conn, source_id)
            for done in sync.run(db, source, settings) if source else ():
                register.dispatch(db, app, done.queued, settings.task_documents)
                applied += done.keys
                if time.monotonic() - started > SYNC_BUDGET_SECONDS:
                    break
            _resting.pop(source_id, None)
        except Exception as exc:  # noqa: BLE001 (whatever one source does, the others go on)
            failures = _resting.get(source_id, (0.0, 0))[1] + 1
            pause = min(MAX_SOURCE_REST_SECONDS, 2**failures)
            _resting[source_id] = (time.monotonic() + pause, failures)
            log.warning("table source %d: its changes wait %d s: %s", source_id, pause, exc, exc_info=failures == 1)
    return applied


@app.task(name=broker.BUILD_TASK, bind=True, max_retries=None)
def build_version(self, version_id: int, cursor: int) -> str:
    """One batch of an embedding version's build; the next goes to the back of the queue, so ingest
    sent meanwhile is embedded first. A paused, finished or removed version's chain ends here."""
    try:
        step, cursor = reembed.build_step(pipeline(), version_id, cursor, settings.task_documents)
    except TRANSIENT as exc:
        log.warning("version %d build: transient error, retrying: %s", version_id, exc)
        raise self.retry(exc=exc, countdown=min(MAX_BACKOFF_SECONDS, 2 ** min(self.request.retries, 6))) from exc
    if step == "more":
        broker.enqueue_build(app, version_id, cursor)
    elif step == "done":
        log.info("version %d built", version_id)
    return step


@app.task(name=broker.RECONCILE_TASK)
def reconcile() -> int:
    """Re-enqueue what Postgres says is unfinished but the queue may have lost: documents, and version
    builds that made no progress for a lease (their worker killed, Redis flushed)."""
    ids = pipeline().stale(queue_empty=broker.queue_depth(settings.redis_url) == 0)
    if ids:
        log.info("reconciler re-enqueues %d documents", len(ids))
        register.dispatch(pipeline().db, app, ids, settings.task_documents)
    with pipeline().db.connect() as conn:
        builds = versions.building(conn, settings.lease_seconds)
    for version_id, cursor in builds:
        log.info("reconciler resumes the build of version %d", version_id)
        broker.enqueue_build(app, version_id, cursor)
    return len(ids)
