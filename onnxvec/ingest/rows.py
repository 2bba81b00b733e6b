"""Rows become documents: the rows read for a batch of keys are registered as documents (the pipeline
then embeds what changed, reusing every chunk whose text is unchanged, so an UPDATE that leaves the
rendered text alone embeds nothing), and a key whose row is gone removes its document and chunks.
Shared by both ways of keeping a table in step: draining the trigger queue and polling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from onnxvec.infra import source_db
from onnxvec.sources import table
from onnxvec.storage import collections, documents
from onnxvec.storage.table_sources import TableSource

BATCH_ROWS = 500


@dataclass
class Synced:
    keys: int = 0  # keys (queue entries, polled rows) taken
    queued: list[int] = field(default_factory=list)  # documents new or changed: to embed
    unchanged: int = 0
    removed: int = 0
    failed: int = 0  # rows that could not be rendered, recorded as failed documents


def apply(conn: Connection, source: TableSource, keys: Sequence[str], rows: dict[str, dict[str, Any]]) -> Synced:
    """Register the rows of `keys` found in `rows`, remove the documents of those not found; in the
    caller's transaction."""
    collection = collections.get_collection_by_id(conn, source.collection_id)
    present = [table.document(source.name, source.spec, key, rows[key]) for key in keys if key in rows]
    gone = [table.external_id(source.name, key) for key in keys if key not in rows]
    registered = documents.register(conn, collection, present)
    removed = documents.remove(conn, collection, gone) if gone else 0
    return Synced(len(keys), registered.queued, registered.unchanged, removed, registered.failed)


def source_engine(local: Engine, source: TableSource) -> Engine:
    """The engine of the database the source's table is in."""
    return local if source.database_url is None else source_db.engine_for(source.database_url)
