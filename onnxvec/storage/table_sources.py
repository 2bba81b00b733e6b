"""All SQL for table sources and their change queue (the rows the triggers of onnxvec/sources/table.py
write): declare, list, remove; take queued keys; report lag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from onnxvec.errors import SourceNotFound, StoreError
from onnxvec.sources.table import TableSpec
from onnxvec.storage.collections import Collection
from onnxvec.values import unstorable

MAX_NAME_BYTES = 48  # its view, NAME_embeddings, must stay within Postgres's 63-byte identifiers
_COLUMNS = (
    "id, name, collection_id, schema_name, table_name, key_columns, text_column, template, metadata_columns, created_at"
)


@dataclass(frozen=True)
class TableSource:
    id: int
    name: str
    collection_id: int
    schema_name: str
    table_name: str
    key_columns: list[str]
    text_column: str | None
    template: str | None
    metadata_columns: list[str]
    created_at: datetime

    @property
    def spec(self) -> TableSpec:
        return TableSpec(
            self.schema_name,
            self.table_name,
            tuple(self.key_columns),
            self.text_column,
            self.template,
            tuple(self.metadata_columns),
        )


def create(conn: Connection, name: str, collection: Collection, spec: TableSpec) -> TableSource:
    if not name or len(name.encode()) > MAX_NAME_BYTES or unstorable(name) or ":" in name:
        raise StoreError(f"a source name is 1 to {MAX_NAME_BYTES} bytes without ':', not {name[:60]!r}")
    row = conn.execute(
        text(
            "INSERT INTO table_sources (name, collection_id, schema_name, table_name, key_columns, text_column,"
            " template, metadata_columns) VALUES (:name, :cid, :schema, :table, :keys, :text, :template, :meta)"
            f" ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}"
        ),
        {
            "name": name,
            "cid": collection.id,
            "schema": spec.schema,
            "table": spec.table,
            "keys": list(spec.key_columns),
            "text": spec.text_column,
            "template": spec.template,
            "meta": list(spec.metadata_columns),
        },
    ).one_or_none()
    if row is None:
        raise StoreError(f"a source named {name!r} exists already")
    return TableSource(*row)


def get(conn: Connection, name: str) -> TableSource:
    if unstorable(name):
        raise SourceNotFound(f"no source named {name[:40]!r}")
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM table_sources WHERE name = :name"), {"name": name}).one_or_none()
    if row is None:
        raise SourceNotFound(f"no source named {name!r}")
    return TableSource(*row)


def get_by_id(conn: Connection, source_id: int) -> TableSource | None:
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM table_sources WHERE id = :id"), {"id": source_id}).one_or_none()
    return None if row is None else TableSource(*row)


def list_sources(conn: Connection) -> list[TableSource]:
    return [TableSource(*row) for row in conn.execute(text(f"SELECT {_COLUMNS} FROM table_sources ORDER BY name"))]


def remove(conn: Connection, source: TableSource) -> None:
    """The source and its queue (the caller drops the triggers first)."""
    conn.execute(text("DELETE FROM table_sources WHERE id = :id"), {"id": source.id})


def own_schema(conn: Connection) -> str:
    """The schema of onnxvec's tables, which triggers and views must name (triggers run with an empty
    search_path)."""
    return conn.execute(
        text(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass('table_changes')"
        )
    ).scalar_one()


def take(conn: Connection, source_id: int, limit: int) -> list[str | None]:
    """Up to `limit` queued keys of a source (jsonb text), oldest first, removed from the queue in the
    caller's transaction (a worker that dies before committing leaves them queued). Entries another
    worker holds are skipped. None stands for a TRUNCATE."""
    return list(
        conn.execute(
            text(
                "DELETE FROM table_changes WHERE id IN (SELECT id FROM table_changes WHERE source_id = :s"
                " ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING key::text"
            ),
            {"s": source_id, "n": limit},
        ).scalars()
    )


def requeue_embedded(conn: Connection, source: TableSource) -> int:
    """Queue the key of every row the source has a document for (after a TRUNCATE: those whose row is
    gone lose their document as the queue drains, in batches like any change)."""
    return conn.execute(
        text(
            "INSERT INTO table_changes (source_id, key) SELECT :s, metadata -> 'key' FROM documents"
            " WHERE collection_id = :cid AND starts_with(external_id, :prefix) AND metadata ? 'key'"
        ),
        {"s": source.id, "cid": source.collection_id, "prefix": f"{source.name}:"},
    ).rowcount


def feeding(conn: Connection, collection_id: int) -> list[str]:
    """The sources that feed a collection."""
    return list(
        conn.execute(text("SELECT name FROM table_sources WHERE collection_id = :c"), {"c": collection_id}).scalars()
    )


def lock_keys(conn: Connection, source_id: int, keys: list[str]) -> None:
    """Serialize work on the same rows (two queue entries of one key taken by two workers): the later
    one waits, then reads the row as it is after the earlier one committed. Taken in one order."""
    conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(:s, h) FROM (SELECT DISTINCT hashtext(k) AS h"
            " FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) ordered"
        ),
        {"s": source_id, "keys": keys},
    )


def with_changes(conn: Connection) -> list[int]:
    """Sources with queued changes."""
    return list(conn.execute(text("SELECT DISTINCT source_id FROM table_changes")).scalars())


def lag(conn: Connection, source: TableSource) -> dict[str, Any]:
    """Queued keys and the age of the oldest (seconds) of one source."""
    queued, oldest = conn.execute(
        text(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(queued_at)) FROM table_changes"
            " WHERE source_id = :s"
        ),
        {"s": source.id},
    ).one()
    return {"queued": int(queued), "lag_seconds": round(float(oldest or 0.0), 3)}
