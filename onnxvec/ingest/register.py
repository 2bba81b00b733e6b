"""Bulk ingest: load sources, register them in Postgres, enqueue what changed, optionally wait.

Each slice of files is registered in its own transaction and then enqueued, so an interrupted run
leaves registered documents pending; the reconciler (or the next run) picks them up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery
from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.errors import CollectionNotFound, StoreError
from onnxvec.infra import broker
from onnxvec.models.manifest import require
from onnxvec.models.pull import pull
from onnxvec.models.store import ModelStore
from onnxvec.sources.files import LoadOptions, SourceDocument, expand, load_file, load_stdin
from onnxvec.storage import collections, documents, stats

FILES_PER_SLICE = 200


@dataclass
class IngestReport:
    collection: str
    files: int = 0
    documents: int = 0
    queued: list[int] = field(default_factory=list)
    unchanged: int = 0
    failed_to_load: int = 0
    pruned: int = 0
    unsupported: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)


def new_collection(
    conn,
    settings: Settings,
    name: str,
    model: str | None,
    metric: str | None,
    *,
    chunk_tokens: int | None = None,
    chunk_overlap: int | None = None,
    language: str | None = None,
    pull_model: bool = True,
) -> collections.Collection:
    """Create a collection for an embedding model and a metric the model suits; chunking and text search
    language as given, or the settings' defaults. The model is pulled if need be, unless `pull_model` is
    false (an HTTP request must not start a download of hundreds of megabytes: it names a pulled model)."""
    store = ModelStore(settings.models_dir)
    name_of_model = model or settings.embedding_model
    manifest = require(pull(store, name_of_model) if pull_model else store.get(name_of_model), "embedding")
    if (metric or "cosine") not in manifest.distance_metrics:
        raise StoreError(f"{manifest.name} suits {', '.join(manifest.distance_metrics)}, not {metric!r}", "metric")
    return collections.create_collection(
        conn,
        name,
        manifest.name,
        int(manifest.dims or 0),
        metric or "cosine",
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construction=settings.hnsw_ef_construction,
        chunk_tokens=settings.chunk_tokens if chunk_tokens is None else chunk_tokens,
        chunk_overlap=settings.chunk_overlap if chunk_overlap is None else chunk_overlap,
        language=language or settings.language,
    )


def ensure_collection(
    conn, settings: Settings, name: str, model: str | None, metric: str | None
) -> collections.Collection:
    """The named collection, created with the given (or default) model and metric if it is new."""
    try:
        collection = collections.get_collection(conn, name)
    except CollectionNotFound:
        return new_collection(conn, settings, name, model, metric)
    if (model and model != collection.model) or (metric and metric != collection.metric):
        raise StoreError(
            f"collection {name!r} uses {collection.model} with {collection.metric}; "
            f"asked for {model or collection.model} with {metric or collection.metric}"
        )
    return collection


def ingest(
    settings: Settings,
    db: Engine,
    app: Celery,
    specs: Sequence[str],
    collection_name: str,
    *,
    model: str | None = None,
    metric: str | None = None,
    options: LoadOptions | None = None,
    stdin: bytes | None = None,
    stdin_kind: str = ".txt",
    prune: bool = False,
) -> IngestReport:
    """Register every source, enqueue new and changed documents, and (with prune) drop vanished ones."""
    options = options or LoadOptions(max_bytes=settings.max_document_bytes)
    with db.begin() as conn:
        collection = ensure_collection(conn, settings, collection_name, model, metric)
    report = IngestReport(collection.name)
    files, unsupported = expand([s for s in specs if s != "-"])
    report.unsupported = [str(p) for p in unsupported]
    report.files = len(files)
    if stdin is not None:
        register_documents(db, app, settings, collection, load_stdin(stdin, stdin_kind, options), report)
    for start in range(0, len(files), FILES_PER_SLICE):
        docs = [doc for path in files[start : start + FILES_PER_SLICE] for doc in load_file(path, options)]
        register_documents(db, app, settings, collection, docs, report)
    if prune:
        roots = [Path(s).resolve().as_uri() for s in specs if s != "-" and Path(s).exists()]
        with db.begin() as conn:
            report.pruned = documents.prune(conn, collection, roots, report.seen)
    return report


def dispatch(db: Engine, app: Celery, ids: Sequence[int], per_task: int) -> None:
    """Queue document ids and record when, so the reconciler can tell queued work from lost work.

    The time is committed before the messages go out: a worker that takes a message at once must not
    meet this UPDATE's row locks, or its claim (SKIP LOCKED) passes those documents over and they wait
    for the reconciler (seen in bench/ingest.py: 32 documents stalled 10 minutes). If sending fails,
    the mark is undone so the reconciler takes them on its next round.
    """
    with db.begin() as conn:
        documents.mark_enqueued(conn, ids)
    try:
        broker.enqueue(app, ids, per_task)
    except Exception:
        with db.begin() as conn:
            documents.mark_enqueued(conn, ids, enqueued=False)
        raise


def register_documents(
    db: Engine,
    app: Celery,
    settings: Settings,
    collection: collections.Collection,
    docs: list[SourceDocument],
    report: IngestReport,
) -> None:
    """Register one slice of documents in its own transaction and queue the new and changed ones, adding
    the outcome to `report`: the one path by which `ingest` and the HTTP API take documents in."""
    with db.begin() as conn:
        registered = documents.register(conn, collection, docs)
    dispatch(db, app, registered.queued, settings.task_documents)
    report.documents += len(docs)
    report.queued += registered.queued
    report.unchanged += registered.unchanged
    report.failed_to_load += registered.failed
    report.seen += [d.external_id for d in docs]


def wait(
    db: Engine,
    collection: collections.Collection | None,
    ids: Sequence[int],
    on_progress: Callable[[dict], None],
    poll_seconds: float = 0.5,
    timeout: float | None = None,
) -> dict:
    """Poll Postgres until none of `ids` is pending or processing; returns the final counts."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with db.connect() as conn:
            counts = stats.counts(conn, collection, ids)
        on_progress(counts)
        states = counts["documents"]
        if states["pending"] + states["processing"] == 0:
            return counts
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"documents still unfinished: {states}")
        time.sleep(poll_seconds)


def stall(counts: dict, claims: dict, queue_depth: int, reconcile_seconds: float) -> str | None:
    """Why unfinished work is not moving, in words for `onnxvec status`, or None while it moves."""
    pending = counts["documents"]["pending"]
    if claims["lapsed_claims"]:
        return (
            f"{claims['lapsed_claims']} claims lapsed (a worker stopped mid-batch): the reconciler hands them out "
            f"again within {reconcile_seconds:g} s if a worker runs (`onnxvec worker`)"
        )
    quiet = not claims["live_claims"] and not counts["done_last_minute"]
    if not pending or not quiet or claims["oldest_pending_seconds"] < 3 * reconcile_seconds:
        return None
    if queue_depth:
        return f"{pending} documents pending, {queue_depth} messages queued, but no worker takes them: `onnxvec worker`"
    return (
        f"{pending} documents pending with no message queued and no worker holding a claim: is a worker running "
        f"(`onnxvec worker`)? Its reconciler queues them again every {reconcile_seconds:g} s"
    )
