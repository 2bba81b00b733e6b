"""Table sync: declare a source (its table checked, its triggers and backfill, or its polling cursor),
run it (drain its trigger queue or poll it, a batch per transaction), report its lag, remove it.

A source's table is in onnxvec's own database or in another Postgres (`--database-url`); its documents
are always here."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy.exc
from sqlalchemy import Connection, Engine

from onnxvec.config import Settings
from onnxvec.errors import StoreError
from onnxvec.infra import source_db
from onnxvec.ingest import drain, poll
from onnxvec.ingest.register import ensure_collection
from onnxvec.ingest.rows import Synced
from onnxvec.sources import polling, table, triggers
from onnxvec.storage import collections, documents, stats, table_sources
from onnxvec.storage.table_sources import TableSource

log = logging.getLogger(__name__)
RATE_SECONDS = 60  # rows/s in the status is over this window


def run(local: Engine, source: TableSource, settings: Settings) -> Iterator[Synced]:
    """The source's changes, applied a batch per transaction (see drain.run and poll.run)."""
    if source.mode == "poll":
        return poll.run(local, source, settings)
    return drain.run(local, source)


@contextlib.contextmanager
def _table_database(conn: Connection, url: str | None) -> Iterator[psycopg.Connection]:
    """A connection to the source's database in a transaction: this one for onnxvec's own database,
    committed on leaving for another one (before the caller's)."""
    if url is None:
        with conn.begin_nested():  # a failure (a dropped table) leaves the caller's transaction usable
            yield conn.connection.driver_connection
        return
    try:
        with source_db.engine_for(url).begin() as remote:
            yield remote.connection.driver_connection
    except sqlalchemy.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[-1] if exc.orig else str(exc)
        raise StoreError(f"cannot reach the source's database {source_db.shown(url)}: {reason}") from exc


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
    database_url: str | None = None,
    poll_column: str | None = None,
) -> tuple[TableSource, int]:
    """Declare a table source in the caller's transaction: the table checked, then either its triggers
    installed and every existing row queued (the backfill), or (polling) nothing installed, every row
    read by the first poll. Returns the source and how many rows wait to be read."""
    if (text_column is None) == (template is None):
        raise StoreError("give the text as --text-column COLUMN or as --template '{title}\\n\\n{body}'")
    schema, table_only = table.parse_table(table_name)
    url = source_db.normalized(database_url) if database_url else None
    target = ensure_collection(conn, settings, collection, model, None)
    with _table_database(conn, url) as raw:
        spec = table.inspect(
            raw, table.TableSpec(schema, table_only, key_columns, text_column, template, tuple(metadata_columns))
        )
        if poll_column is not None:
            polling.column_type(raw, spec, poll_column)
        source = table_sources.create(conn, name, target, spec, database_url=url, poll_column=poll_column)
        table.same_keys_everywhere(raw)
        if poll_column is not None:
            return source, polling.unread(raw, spec, poll_column, None)["queued"]
        return source, _install(conn, raw, source)


def _install(conn: Connection, raw: psycopg.Connection, source: TableSource) -> int:
    """Triggers, the remote queue (another database) or the view (onnxvec's own), and the backfill."""
    spec, queue = source.spec, drain.queue_of(conn, source)
    try:
        if source.database_url is not None:
            triggers.ensure_queue(raw, queue)
        triggers.install_triggers(raw, spec, source.id, queue)
        if source.database_url is None:
            triggers.create_view(raw, spec, source.name, source.collection_id, table_sources.own_schema(conn))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreError(
            f"this database user may not add triggers to {spec.label} (it must own the table); "
            "--poll COLUMN syncs without triggers"
        ) from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise StoreError(f"the database of {spec.label} is read-only; --poll COLUMN syncs without triggers") from exc
    except psycopg.errors.DuplicateFunction as exc:
        raise StoreError(
            f"{spec.schema}.onnxvec_sync_{source.id}() exists already: another onnxvec syncs a table in that"
            " database, or a removed source left it there (drop it if so)"
        ) from exc
    except psycopg.errors.DuplicateTable as exc:
        raise StoreError(f"{spec.schema}.{source.name}_embeddings exists already: name the source otherwise") from exc
    return triggers.backfill(raw, spec, source.id, queue)


def remove_source(conn: Connection, name: str, *, drop_embeddings: bool = False, force: bool = False) -> int:
    """Remove a source's triggers and queue; with `drop_embeddings`, its documents and chunks too; with
    `force`, even when its other database cannot be reached (its triggers stay there). Returns how
    many documents were dropped."""
    source = table_sources.get(conn, name)
    if source.mode == "triggers":
        try:
            with _table_database(conn, source.database_url) as raw:
                if source.database_url is None:
                    triggers.drop_view(raw, source.spec, source.name)
                triggers.drop_triggers(raw, source.spec, source.id)
                if source.database_url is not None:
                    triggers.forget(raw, drain.queue_of(conn, source), source.id)
        except StoreError as exc:
            if not force:
                raise StoreError(
                    f"{exc}; `sources rm --force` removes the source and leaves its triggers there"
                ) from exc
    dropped = 0
    if drop_embeddings:
        collection = collections.get_collection_by_id(conn, source.collection_id)
        prefix = f"{source.name}:"
        dropped = documents.remove(conn, collection, documents.ids_with_prefix(conn, collection, prefix))
    table_sources.remove(conn, source)
    return dropped


def reread_failed(conn: Connection, collection: collections.Collection | None) -> int:
    """`onnxvec retry` for rows: a row that could not be rendered is read again (it may have been fixed
    since without a change the source saw, or the failure was in reading it): its failed document is
    removed and its key queued (polling: the next run's full pass finds it). Returns how many rows."""
    count = 0
    for source in table_sources.list_sources(conn):
        if collection is not None and source.collection_id != collection.id:
            continue
        failed = table_sources.unrendered(conn, source)
        if not failed:
            continue
        target = collections.get_collection_by_id(conn, source.collection_id)
        if source.mode == "poll":
            table_sources.request_full_pass(conn, source)
        else:
            try:
                with _table_database(conn, source.database_url) as raw:
                    triggers.enqueue(raw, drain.queue_of(conn, source), source.id, [key for _, key in failed])
            except StoreError:  # its database is down: those rows stay failed until the next retry
                log.warning("source %s: its failed rows cannot be queued again now", source.name)
                continue
        documents.remove(conn, target, [eid for eid, _ in failed])
        count += len(failed)
    return count


def lag(conn: Connection, source: TableSource) -> dict[str, Any]:
    """Rows changed and not yet applied, and the age of the oldest (seconds); in another database that
    cannot be reached, both None and the reason."""
    try:
        with _table_database(conn, source.database_url) as raw:
            table.same_keys_everywhere(raw)
            if source.mode == "poll":
                read = (source.poll_cursor or {}).get("read")
                return polling.unread(raw, source.spec, source.poll_column or "", tuple(read) if read else None)
            return triggers.lag(raw, drain.queue_of(conn, source), source.id)
    except (StoreError, psycopg.Error) as exc:
        return {"queued": None, "lag_seconds": None, "error": str(exc)}


def status(conn: Connection, source: TableSource) -> dict[str, Any]:
    """What `sources status` and GET /v1/sources show: the table and its database, the collection, the
    mode, queued rows and the oldest one's age (the lag), rows/s over the last minute, and the source's
    documents by state (failures included)."""
    collection = collections.get_collection_by_id(conn, source.collection_id)
    prefix = f"{source.name}:"
    return {
        "object": "source",
        "id": source.name,
        "table": source.spec.label,
        "database": None if source.database_url is None else source_db.shown(source.database_url),
        "collection": collection.name,
        "key": source.key_columns,
        "mode": source.mode,
        "poll_column": source.poll_column,
        **lag(conn, source),
        "rows_per_second": round(stats.finished_recently(conn, collection, prefix, RATE_SECONDS) / RATE_SECONDS, 2),
        "documents": stats.counts_with_prefix(conn, collection, prefix),
    }
