"""Changing a collection's model, metric or chunking without downtime: a new embedding version is
built from the documents' stored text while search keeps reading the active one, then switched to.

start -> build_step (a worker task, one batch at a time, re-queued behind fresh ingest) -> the version
is ready and, unless started otherwise, active; activate switches back and forth between ready
versions; pause, resume and prune manage the rest. The build's cursor moves in the transaction that
writes its batch, so a killed worker resumes where the last commit left it; meanwhile every ingest
writes to every version (onnxvec/ingest/pipeline.py), so what changed behind the cursor is there too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

from sqlalchemy import Connection, Engine, text

from onnxvec.config import Settings
from onnxvec.errors import ModelNotFound, StoreError
from onnxvec.ingest.pipeline import Pipeline
from onnxvec.models.manifest import require
from onnxvec.models.store import ModelStore
from onnxvec.storage import chunks, collections, versions

Step = Literal["more", "done", "paused", "ready", "gone", "busy"]
_LOCK_SPACE = 0x6F6E7876  # advisory lock space of version builds ("onxv")


def start(
    conn: Connection,
    settings: Settings,
    collection: collections.Collection,
    *,
    model: str | None = None,
    metric: str | None = None,
    chunk_tokens: int | None = None,
    chunk_overlap: int | None = None,
    activate: bool = True,
) -> versions.Version:
    """A new version of the collection with what is given changed and the rest as the active version
    has it, to be built: the caller sends the build out after commit (`broker.enqueue_build`)."""
    changes = {"metric": metric, "chunk_tokens": chunk_tokens, "chunk_overlap": chunk_overlap}
    wanted = collection.settings | {key: value for key, value in changes.items() if value is not None}
    manifest = require(ModelStore(settings.models_dir).get(model or collection.model), "embedding")
    wanted |= {"model": manifest.name, "dims": int(manifest.dims or 0)}
    if wanted["metric"] not in manifest.distance_metrics:
        raise StoreError(
            f"{manifest.name} suits {', '.join(manifest.distance_metrics)}, not {wanted['metric']!r}", "metric"
        )
    if wanted == collection.settings:
        raise StoreError("nothing to change: give a model, metric or chunking that differs from the active version")
    collections.check_settings(wanted)
    versions.lock_collection(conn, collection.id, exclusive=True)
    version_id = versions.insert(conn, collection.id, wanted, state="building", activate_when_built=activate)
    return next(v for v in versions.list_versions(conn, collection.id) if v.id == version_id)


def build_step(pipeline: Pipeline, version_id: int, cursor: int, batch: int) -> tuple[Step, int]:
    """Embed the batch of the version's documents after `cursor`, or finish the version; what to do
    next, and the cursor to go on from. A step whose cursor the build has passed is a duplicate (a
    message delivered twice, the reconciler's resend) and does nothing: one chain of steps goes on.
    One builder per version at a time (a session advisory lock, released when its connection closes,
    even by a kill)."""
    with _alone(pipeline.db, version_id) as alone:
        if not alone:
            return "busy", cursor
        with pipeline.db.connect() as conn:
            target = collections.at_version(conn, version_id)
            pending = versions.next_batch(conn, version_id, batch)
        if target is None or pending is None:
            return "gone", cursor
        if pending.cursor != cursor:
            return "busy", cursor
        if pending.state != "building":
            return pending.state, cursor  # type: ignore[return-value]  (paused, or ready)
        if not pending.documents:
            with pipeline.db.begin() as conn:
                return ("done" if versions.finish_build(conn, version_id) else "more"), cursor
        hashes = {doc_id: digest for doc_id, _, digest in pending.documents}
        try:
            ready = pipeline.prepare(target, {doc_id: content for doc_id, content, _ in pending.documents})
        except ModelNotFound as exc:  # not on this worker: wait for someone to pull it and resume
            with pipeline.db.begin() as conn:
                versions.set_state(conn, version_id, "paused", f"embedding model unavailable: {exc}")
            return "paused", cursor
        with pipeline.db.begin() as conn:
            if version_id not in versions.lock_collection(conn, target.id):
                return "gone", cursor  # pruned meanwhile
            kept = versions.current(conn, hashes)  # a document changed since: the ingest writes it here too
            chunks.replace_chunks(conn, target, {doc_id: ready.rows.get(doc_id, []) for doc_id in kept})
            versions.advance(conn, version_id, max(hashes), len(kept), ready.embedded, ready.reused)
        return "more", max(hashes)


@contextlib.contextmanager
def _alone(db: Engine, version_id: int) -> Iterator[bool]:
    with db.connect() as conn:
        key = {"space": _LOCK_SPACE, "v": version_id}
        got = conn.execute(text("SELECT pg_try_advisory_lock(:space, :v)"), key).scalar_one()
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:space, :v)"), key)
                conn.commit()


def activate(conn: Connection, collection: collections.Collection, number: int) -> versions.Version:
    """Make a built version the active one (a roll forward or back): one UPDATE, under the lock."""
    versions.lock_collection(conn, collection.id, exclusive=True)
    version = versions.get_version(conn, collection.id, number)
    if version.state != "ready":
        raise StoreError(
            f"version {number} of {collection.name!r} is {version.state} ({version.progress:.0%} built):"
            " only a built version can be made active",
            "version",
        )
    versions.set_active(conn, collection.id, version.id)
    return version


def pause(conn: Connection, collection: collections.Collection, number: int, *, paused: bool) -> versions.Version:
    """Stop (or let go on) a version's build; ingest keeps writing to it either way."""
    version = versions.get_version(conn, collection.id, number)
    if version.state == "ready":
        raise StoreError(f"version {number} of {collection.name!r} is built: there is nothing to pause", "version")
    versions.set_state(conn, version.id, "paused" if paused else "building")
    return version


def prune(conn: Connection, collection: collections.Collection) -> list[int]:
    """Remove every version but the active one (an unfinished build is cancelled); their numbers."""
    versions.lock_collection(conn, collection.id, exclusive=True)
    gone = [v for v in versions.list_versions(conn, collection.id) if not v.active]
    versions.remove(conn, [v.id for v in gone])
    return [v.version for v in gone]
