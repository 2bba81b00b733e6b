"""All SQL for the table sources onnxvec keeps: declare, list, remove, which to visit, how far polling
has read. (The change queue the triggers write is in onnxvec/sources/triggers.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterable
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
    "id, name, collection_id, schema_name, table_name, key_columns, text_column, template, metadata_columns,"
    " created_at, database_url, poll_column, poll_cursor, full_pass_at"
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
    database_url: str | None  # None: onnxvec's own database
    poll_column: str | None  # None: kept by triggers
    poll_cursor: dict[str, Any] | None  # how far polling has read
    full_pass_at: datetime | None

    @property
    def mode(self) -> str:
        return "triggers" if self.poll_column is None else "poll"

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


def create(
    conn: Connection,
    name: str,
    collection: Collection,
    spec: TableSpec,
    *,
    database_url: str | None = None,
    poll_column: str | None = None,
) -> TableSource:
    if not name or len(name.encode()) > MAX_NAME_BYTES or unstorable(name) or ":" in name:
        raise StoreError(f"a source name is 1 to {MAX_NAME_BYTES} bytes without ':', not {name[:60]!r}")
    row = conn.execute(
        text(
            "INSERT INTO table_sources (name, collection_id, schema_name, table_name, key_columns, text_column,"
            " template, metadata_columns, database_url, poll_column)"
            " VALUES (:name, :cid, :schema, :table, :keys, :text, :template, :meta, :url, :poll)"
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
            "url": database_url,
            "poll": poll_column,
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


def _documents_of(conn: Connection, source: TableSource, columns: str, condition: str) -> list[Any]:
    """Rows of `columns` from the source's documents (`d`) that meet `condition` (fixed SQL, no input)."""
    return conn.execute(
        text(
            f"SELECT {columns} FROM documents d WHERE d.collection_id = :cid"
            f" AND starts_with(d.external_id, :prefix) AND {condition}"
        ),
        {"cid": source.collection_id, "prefix": f"{source.name}:"},
    ).all()


def embedded_keys(conn: Connection, source: TableSource) -> list[str]:
    """The key (jsonb text) of every row the source has a document for: after a TRUNCATE they are queued
    again, and those whose row is gone lose their document as the queue drains, in batches."""
    return [key for (key,) in _documents_of(conn, source, "(d.metadata -> 'key')::text", "d.metadata ? 'key'")]


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


def to_visit(conn: Connection) -> list[int]:
    """Sources a sync run must look at: those with changes in onnxvec's own queue, and every source in
    another database or kept by polling (their changes are not visible from here)."""
    return list(
        conn.execute(
            text(
                "SELECT id FROM table_sources WHERE database_url IS NOT NULL OR poll_column IS NOT NULL"
                " OR id IN (SELECT DISTINCT source_id FROM table_changes) ORDER BY id"
            )
        ).scalars()
    )


def hold_for_poll(conn: Connection, source: TableSource) -> bool:
    """Whether this transaction may poll the source now: one poller at a time (another worker's run
    holds it; this one moves on)."""
    return (
        conn.execute(
            text("SELECT 1 FROM table_sources WHERE id = :id FOR NO KEY UPDATE SKIP LOCKED"), {"id": source.id}
        ).one_or_none()
        is not None
    )


def advance(conn: Connection, source: TableSource, cursor: dict[str, Any]) -> None:
    """Record how far polling has read (see onnxvec/sources/polling.py)."""
    conn.execute(
        text("UPDATE table_sources SET poll_cursor = CAST(:cursor AS jsonb) WHERE id = :id"),
        {"cursor": json.dumps(cursor), "id": source.id},
    )


def finish_full_pass(conn: Connection, source: TableSource) -> None:
    conn.execute(text("UPDATE table_sources SET full_pass_at = now() WHERE id = :id"), {"id": source.id})


def load_seen_keys(conn: Connection, keys: Iterable[str]) -> None:
    """Every key a full pass read from the table, into a temporary table of this transaction."""
    conn.execute(text("CREATE TEMPORARY TABLE onnxvec_seen_keys (key text PRIMARY KEY) ON COMMIT DROP"))
    with conn.connection.driver_connection.cursor().copy("COPY onnxvec_seen_keys (key) FROM STDIN") as copy:
        for key in keys:
            copy.write_row((key,))


def unseen_documents(conn: Connection, source: TableSource) -> list[str]:
    """The source's documents whose key the full pass did not read: their rows are gone."""
    unseen = "NOT EXISTS (SELECT FROM onnxvec_seen_keys s WHERE s.key = (d.metadata -> 'key')::text)"
    return [eid for (eid,) in _documents_of(conn, source, "d.external_id", unseen)]


def unseen_keys(conn: Connection, source: TableSource) -> list[str]:
    """Keys the full pass read that have no document of the source."""
    return list(
        conn.execute(
            text(
                "SELECT key FROM onnxvec_seen_keys s WHERE NOT EXISTS (SELECT FROM documents d"
                " WHERE d.collection_id = :cid AND starts_with(d.external_id, :prefix)"
                " AND (d.metadata -> 'key')::text = s.key) ORDER BY key"
            ),
            {"cid": source.collection_id, "prefix": f"{source.name}:"},
        ).scalars()
    )


def unrendered(conn: Connection, source: TableSource) -> list[tuple[str, str]]:
    """(external id, key) of the source's failed documents that never had text (the row could not be
    rendered): retrying them means reading the row again."""
    failed = "d.state = 'failed' AND d.content IS NULL AND d.metadata ? 'key'"
    return [
        (eid, key) for eid, key in _documents_of(conn, source, "d.external_id, (d.metadata -> 'key')::text", failed)
    ]


def request_full_pass(conn: Connection, source: TableSource) -> None:
    """A polled source's next run compares every key (and reads rows that have no document)."""
    conn.execute(text("UPDATE table_sources SET full_pass_at = NULL WHERE id = :id"), {"id": source.id})
