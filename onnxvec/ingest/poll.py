"""Keeping a table in step by polling (`sources add --poll COLUMN`), for tables where triggers cannot be
installed: each run reads the rows whose changed-at passed the source's cursor and applies them
(onnxvec/ingest/rows.py); a full pass every ONNXVEC_POLL_FULL_PASS_SECONDS compares every key of the
table with the source's documents, removing those whose row is gone and adding rows never read (no
changed-at). One poller per source at a time; the cursor moves in the transaction that registers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.ingest.rows import BATCH_ROWS, Synced, apply, source_engine
from onnxvec.sources import polling, table
from onnxvec.storage import collections, documents, table_sources
from onnxvec.storage.table_sources import TableSource


def run(local: Engine, source: TableSource, settings: Settings) -> Iterator[Synced]:
    """Poll a batch at a time, yielding after each committed batch; then a full pass when one is due."""
    position: tuple[str, str | None] | None = None  # read up to, in this run (the stored cursor lags it)
    column = source.poll_column or ""
    while True:
        with source_engine(local, source).begin() as remote, local.begin() as conn:
            if not table_sources.hold_for_poll(conn, source):
                return  # another worker is polling it
            source = table_sources.get_by_id(conn, source.id) or source
            cursor = source.poll_cursor or {}
            if position is None and cursor.get("after") is not None:
                position = (cursor["after"], cursor.get("after_key"))
            raw = remote.connection.driver_connection
            table.same_keys_everywhere(raw)
            rows = polling.changed_rows(raw, source.spec, column, position, BATCH_ROWS)
            done = apply(conn, source, [key for key, _, _ in rows], {key: row for key, _, row in rows})
            read = tuple(cursor["read"]) if cursor.get("read") else None
            if rows:
                position = (rows[-1][1], rows[-1][0])
                read = position if read is None or polling.later(raw, source.spec, column, position, read) else read
            limit = polling.cutoff(raw, source.spec, column, settings.poll_lookback_seconds)
            stored = position
            if position is not None and not polling.earlier(raw, source.spec, column, position[0], limit):
                stored = (limit, None)  # rows changed within the look-back are read again next run
            after, after_key = stored or (None, None)
            table_sources.advance(conn, source, {"after": after, "after_key": after_key, "read": read})
        yield done
        if len(rows) < BATCH_ROWS:
            break
    due = source.full_pass_at is None or datetime.now(UTC) - source.full_pass_at > timedelta(
        seconds=settings.poll_full_pass_seconds
    )
    if due:
        yield full_pass(local, source)


def full_pass(local: Engine, source: TableSource) -> Synced:
    """Every key of the table against the source's documents: a document whose row is gone is removed,
    a row with no document (never read: no changed-at) is registered."""
    with source_engine(local, source).begin() as remote, local.begin() as conn:
        if not table_sources.hold_for_poll(conn, source):
            return Synced()
        raw = remote.connection.driver_connection
        table.same_keys_everywhere(raw)
        table_sources.load_seen_keys(conn, polling.all_keys(raw, source.spec))
        gone = table_sources.unseen_documents(conn, source)
        collection = collections.get_collection_by_id(conn, source.collection_id)
        done = Synced(keys=len(gone), removed=documents.remove(conn, collection, gone) if gone else 0)
        missing = table_sources.unseen_keys(conn, source)
        for start in range(0, len(missing), BATCH_ROWS):
            keys = missing[start : start + BATCH_ROWS]
            part = apply(conn, source, keys, table.load_rows(raw, source.spec, keys))
            done.keys += part.keys
            done.queued += part.queued
            done.unchanged += part.unchanged
            done.failed += part.failed
        table_sources.finish_full_pass(conn, source)
    return done
