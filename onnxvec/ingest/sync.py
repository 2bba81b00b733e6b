"""Table sync: queued row keys become documents. A worker takes a batch of keys from the change queue,
loads those rows in one query and registers them as documents in the same transaction that removes
the keys from the queue; a key whose row is gone removes its document (and chunks). The existing
pipeline then embeds what changed, reusing every chunk whose text is unchanged; an UPDATE that leaves
the rendered text alone embeds nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection

from onnxvec.config import Settings
from onnxvec.errors import StoreError
from onnxvec.ingest.register import ensure_collection
from onnxvec.sources import table
from onnxvec.storage import collections, documents, stats, table_sources
from onnxvec.storage.table_sources import TableSource

BATCH_ROWS = 500


@dataclass
class Synced:
    keys: int = 0  # queue entries taken
    queued: list[int] = field(default_factory=list)  # documents new or changed: to embed
    unchanged: int = 0
    removed: int = 0
    failed: int = 0  # rows that could not be rendered, recorded as failed documents


def sync_batch(conn: Connection, source: TableSource, limit: int = BATCH_ROWS) -> Synced:
    """Apply up to `limit` queued changes of `source`, in the caller's transaction."""
    raw = conn.connection.driver_connection
    table.same_keys_everywhere(raw)
    taken = table_sources.take(conn, source.id, limit)
    out = Synced(keys=len(taken))
    if not taken:
        return out
    if None in taken:  # a TRUNCATE: every row this source embedded may be gone; their keys are queued
        table_sources.requeue_embedded(conn, source)
    keys = sorted({key for key in taken if key is not None})
    table_sources.lock_keys(conn, source.id, keys)
    spec = source.spec
    rows = table.load_rows(raw, spec, keys)
    collection = collections.get_collection_by_id(conn, source.collection_id)
    present = [table.document(source.name, spec, key, rows[key]) for key in keys if key in rows]
    gone = [table.external_id(source.name, key) for key in keys if key not in rows]
    registered = documents.register(conn, collection, present)
    out.queued, out.unchanged, out.failed = registered.queued, registered.unchanged, registered.failed
    out.removed = documents.remove(conn, collection, gone) if gone else 0
    return out


def add_source(
    conn: Connection,
    settings: Settings,
    name: str,
    table_name: str,
    collection: str,
    *,
    text_column: str | None = None,
    template: str | None = None,
    metadata_columns: tuple[str, ...] = (),
    key_columns: tuple[str, ...] = (),
    model: str | None = None,
) -> tuple[TableSource, int]:
    """Declare a table source in the caller's transaction: the table checked, its triggers installed
    and every existing row queued (the backfill). Returns the source and how many rows were queued."""
    if (text_column is None) == (template is None):
        raise StoreError("give the text as --text-column COLUMN or as --template '{title}\\n\\n{body}'")
    schema, table_only = table.parse_table(table_name)
    raw = conn.connection.driver_connection
    spec = table.inspect(
        raw, table.TableSpec(schema, table_only, key_columns, text_column, template, tuple(metadata_columns))
    )
    target = ensure_collection(conn, settings, collection, model, None)
    source = table_sources.create(conn, name, target, spec)
    schema = table_sources.own_schema(conn)
    queue = sql.Identifier(schema, "table_changes")
    try:
        table.install_triggers(raw, spec, source.id, queue)
        table.create_view(raw, spec, source.name, target.id, schema)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreError(f"this database user may not add triggers to {spec.label}: it must own the table") from exc
    except psycopg.errors.DuplicateTable as exc:
        raise StoreError(f"{spec.schema}.{source.name}_embeddings exists already: name the source otherwise") from exc
    table.same_keys_everywhere(raw)
    return source, table.backfill(raw, spec, source.id, queue)


def remove_source(conn: Connection, name: str, *, drop_embeddings: bool = False) -> int:
    """Remove a source's triggers and queue; with `drop_embeddings`, its documents and chunks too.
    Returns how many documents were dropped."""
    source = table_sources.get(conn, name)
    raw = conn.connection.driver_connection
    table.drop_view(raw, source.spec, source.name)
    table.drop_triggers(raw, source.spec, source.id)
    dropped = 0
    if drop_embeddings:
        collection = collections.get_collection_by_id(conn, source.collection_id)
        prefix = f"{source.name}:"
        dropped = documents.remove(conn, collection, documents.ids_with_prefix(conn, collection, prefix))
    table_sources.remove(conn, source)
    return dropped


def status(conn: Connection, source: TableSource) -> dict[str, Any]:
    """What `sources status` and GET /v1/sources show: the table, the collection, the mode, queued
    rows and the oldest one's age (the lag), and the source's documents by state."""
    collection = collections.get_collection_by_id(conn, source.collection_id)
    return {
        "object": "source",
        "id": source.name,
        "table": source.spec.label,
        "collection": collection.name,
        "key": source.key_columns,
        "mode": "triggers",
        **table_sources.lag(conn, source),
        "documents": stats.counts_with_prefix(conn, collection, f"{source.name}:"),
    }
