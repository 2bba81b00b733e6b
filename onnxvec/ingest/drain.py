"""Draining a trigger-kept source's queue: a worker takes a batch of keys, loads those rows in one query
and applies them (onnxvec/ingest/rows.py).

In onnxvec's own database the keys leave the queue in the transaction that registers their documents.
A table in another database has its queue there: the documents are committed here first and the keys
removed there after, so a worker killed between the two applies the same keys again, which changes
nothing (registering is idempotent by content hash)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine

from onnxvec.ingest.rows import BATCH_ROWS, Synced, apply, source_engine
from onnxvec.sources import table, triggers
from onnxvec.storage import table_sources
from onnxvec.storage.table_sources import TableSource


def queue_of(conn: Connection, source: TableSource) -> sql.Identifier:
    """Where the source's triggers queue keys: onnxvec's table_changes, or the remote queue."""
    if source.database_url is None:
        return sql.Identifier(table_sources.own_schema(conn), "table_changes")
    return triggers.remote_queue(source.spec)


def run(local: Engine, source: TableSource) -> Iterator[Synced]:
    """Apply the queued changes a batch at a time, yielding after each committed batch (a caller whose
    time is up stops iterating; nothing is left half done)."""
    while True:
        if source.database_url is None:
            with local.begin() as conn:
                done = _drain(conn, conn.connection.driver_connection, source)
        else:
            with source_engine(local, source).begin() as remote, local.begin() as conn:  # here first, there after
                done = _drain(conn, remote.connection.driver_connection, source)
        yield done
        if done.keys < BATCH_ROWS:
            return


def _drain(conn: Connection, raw: psycopg.Connection, source: TableSource) -> Synced:
    table.same_keys_everywhere(raw)
    queue = queue_of(conn, source)
    taken = triggers.take(raw, queue, source.id, BATCH_ROWS)
    if None in taken:  # a TRUNCATE: every row this source embedded may be gone; their keys are queued
        triggers.enqueue(raw, queue, source.id, table_sources.embedded_keys(conn, source))
    keys = sorted({key for key in taken if key is not None})
    table_sources.lock_keys(conn, source.id, keys)
    done = apply(conn, source, keys, table.load_rows(raw, source.spec, keys))
    done.keys = len(taken)
    return done
