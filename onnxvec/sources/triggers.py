"""Triggers that keep a table in step: row and TRUNCATE triggers write changed keys into a queue table
in the changing transaction, and workers take them from it. The queue is onnxvec's `table_changes` for
a table in onnxvec's own database, and `onnxvec_changes` beside the table in another database (the
trigger must write in the database it runs in). Also the per-source view for psql users.

Every identifier a user gives reaches SQL through `psycopg.sql.Identifier`; the trigger function's body
is passed as a string literal, so no name can break out of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from onnxvec.sources.table import TableSpec, key_list

REMOTE_QUEUE = "onnxvec_changes"


def remote_queue(spec: TableSpec) -> sql.Identifier:
    """The queue in another database: a table beside the source's, in a schema its owner can write."""
    return sql.Identifier(spec.schema, REMOTE_QUEUE)


def ensure_queue(raw: psycopg.Connection, queue: sql.Identifier) -> None:
    """Create a remote queue (the same columns as onnxvec's table_changes) if it is not there."""
    raw.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, source_id integer NOT NULL, key jsonb,"
            " queued_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ).format(queue)
    )
    raw.execute(sql.SQL("CREATE INDEX IF NOT EXISTS onnxvec_changes_source_idx ON {} (source_id, id)").format(queue))


def install_triggers(raw: psycopg.Connection, spec: TableSpec, source_id: int, queue: sql.Identifier) -> None:
    """Row triggers (INSERT, UPDATE, DELETE) and a TRUNCATE trigger that write changed keys into
    `queue` in the changing transaction: a rolled-back change queues nothing. An UPDATE that moves
    the key queues the old key too (its document is then removed)."""
    function = sql.Identifier(spec.schema, f"onnxvec_sync_{int(source_id)}")

    def key_of(row: str) -> sql.Composed:
        return sql.SQL("jsonb_build_array({})").format(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.SQL(row), sql.Identifier(c)) for c in spec.key_columns)
        )

    body = sql.SQL(
        "BEGIN\n"
        "  IF TG_OP = 'TRUNCATE' THEN\n"
        "    INSERT INTO {queue} (source_id, key) VALUES ({id}, NULL);\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        "  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND {old} IS DISTINCT FROM {new}) THEN\n"
        "    INSERT INTO {queue} (source_id, key) VALUES ({id}, {old});\n"
        "  END IF;\n"
        "  IF TG_OP IN ('INSERT', 'UPDATE') THEN\n"
        "    INSERT INTO {queue} (source_id, key) VALUES ({id}, {new});\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END"
    ).format(queue=queue, id=sql.Literal(int(source_id)), old=key_of("OLD"), new=key_of("NEW"))
    raw.execute(
        sql.SQL(
            "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET IntervalStyle = 'postgres'"
            " AS {body}"
        ).format(function=function, body=sql.Literal(body.as_string(raw)))
    )
    # it runs as its owner: no other role may attach it to a table of its own
    raw.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {}() FROM PUBLIC").format(function))
    for name, timing in (
        ("row", "INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW"),
        ("truncate", "TRUNCATE ON {table}"),
    ):
        trigger = sql.Identifier(f"onnxvec_sync_{int(source_id)}_{name}")
        raw.execute(
            sql.SQL("CREATE TRIGGER {trigger} AFTER " + timing + " EXECUTE FUNCTION {function}()").format(
                trigger=trigger, table=spec.qualified, function=function
            )
        )


def drop_triggers(raw: psycopg.Connection, spec: TableSpec, source_id: int) -> None:
    """The source's function and, with it, its triggers (a table dropped meanwhile took them already)."""
    function = sql.Identifier(spec.schema, f"onnxvec_sync_{int(source_id)}")
    raw.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(function))


def view_name(spec: TableSpec, source: str) -> sql.Identifier:
    """The source's view, beside its table: `<source>_embeddings`."""
    return sql.Identifier(spec.schema, f"{source}_embeddings")


def create_view(raw: psycopg.Connection, spec: TableSpec, source: str, collection_id: int, schema: str) -> None:
    """A view of the table's keys with their chunks and vectors (one row per chunk), so that psql users
    can `ORDER BY onnxvec_embedding <=> '[...]'` (and join the table for its other columns, which the
    view leaves out so that they can still be altered or dropped)."""
    key = sql.SQL("jsonb_build_array({})").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in spec.key_columns)
    )
    raw.execute(
        sql.SQL(
            "CREATE VIEW {view} AS SELECT {keys}, c.ordinal AS onnxvec_chunk_ordinal, c.text AS onnxvec_chunk,"
            " c.embedding AS onnxvec_embedding FROM {table} t"
            " JOIN {documents} d ON d.collection_id = {cid} AND starts_with(d.external_id, {prefix})"
            " AND d.metadata -> 'key' = {key}"
            " JOIN {chunks} c ON c.document_id = d.id"
        ).format(
            view=view_name(spec, source),
            keys=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in spec.key_columns),
            table=spec.qualified,
            documents=sql.Identifier(schema, "documents"),
            chunks=sql.Identifier(schema, "chunks"),
            cid=sql.Literal(int(collection_id)),
            prefix=sql.Literal(f"{source}:"),
            key=key,
        )
    )


def drop_view(raw: psycopg.Connection, spec: TableSpec, source: str) -> None:
    raw.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view_name(spec, source)))


def backfill(raw: psycopg.Connection, spec: TableSpec, source_id: int, queue: sql.Identifier) -> int:
    """Queue every existing row's key; returns how many."""
    return raw.execute(
        sql.SQL("INSERT INTO {queue} (source_id, key) SELECT {id}, jsonb_build_array({keys}) FROM {table}").format(
            queue=queue, id=sql.Literal(int(source_id)), keys=key_list(spec), table=spec.qualified
        )
    ).rowcount


def take(raw: psycopg.Connection, queue: sql.Identifier, source_id: int, limit: int) -> list[str | None]:
    """Up to `limit` queued keys of a source (jsonb text), oldest first, removed from the queue in the
    caller's transaction (a worker that dies before committing leaves them queued). Entries another
    worker holds are skipped. None stands for a TRUNCATE."""
    return [
        key
        for (key,) in raw.execute(
            sql.SQL(
                "DELETE FROM {queue} WHERE id IN (SELECT id FROM {queue} WHERE source_id = %s"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING key::text"
            ).format(queue=queue),
            [source_id, limit],
        )
    ]


def enqueue(raw: psycopg.Connection, queue: sql.Identifier, source_id: int, keys: Sequence[str]) -> None:
    """Queue keys (jsonb text) as the triggers would (after a TRUNCATE: every key the source embedded)."""
    raw.execute(
        sql.SQL("INSERT INTO {} (source_id, key) SELECT %s, k::jsonb FROM unnest(%s::text[]) AS k").format(queue),
        [source_id, list(keys)],
    )


def forget(raw: psycopg.Connection, queue: sql.Identifier, source_id: int) -> None:
    """Drop a removed source's queued keys (onnxvec's own queue does it by foreign key)."""
    raw.execute(sql.SQL("DELETE FROM {} WHERE source_id = %s").format(queue), [source_id])


def lag(raw: psycopg.Connection, queue: sql.Identifier, source_id: int) -> dict[str, Any]:
    """Queued keys and the age of the oldest (seconds)."""
    queued, oldest = raw.execute(
        sql.SQL(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(queued_at)) FROM {} WHERE source_id = %s"
        ).format(queue),
        [source_id],
    ).fetchone()
    return {"queued": int(queued), "lag_seconds": round(float(oldest or 0.0), 3)}
