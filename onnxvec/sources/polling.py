"""Polling a table where triggers cannot be installed (a replica, a database user without the right to
add triggers): rows whose changed-at column passed a cursor, in (changed-at, key) order, and every key
of the table for the full passes that find deleted rows.

The cursor is {"after": changed-at, "after_key": key or null, "seen": the newest changed-at read}. It
never passes the source's clock minus a look-back: a transaction that set its changed-at before another
one's but committed after it is still found by the next poll (its row is read again, unchanged rows cost
a hash comparison)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from onnxvec.errors import StoreError
from onnxvec.sources.table import TableSpec, column_types, key_list, key_values, select_rows

POLLABLE_TYPES = ("timestamp with time zone", "timestamp without time zone")


def check_column(raw: psycopg.Connection, spec: TableSpec, column: str) -> None:
    """The changed-at column exists and holds timestamps (StoreError says otherwise)."""
    found = column_types(raw, spec, [column]).get(column)
    if found is None:
        raise StoreError(f"{spec.label} has no column {column!r}")
    if found not in POLLABLE_TYPES:
        raise StoreError(f"--poll takes a timestamp column; {column!r} is {found}")


def _clock(raw: psycopg.Connection, spec: TableSpec, column: str) -> sql.Composable:
    """The source's clock in the column's type: a timestamp without time zone is read as the server's
    default time zone writes it (what now() stores there)."""
    if column_types(raw, spec, [column])[column] == POLLABLE_TYPES[0]:
        return sql.SQL("statement_timestamp()")
    return sql.SQL("(statement_timestamp() AT TIME ZONE (SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'))")


def changed_rows(
    raw: psycopg.Connection, spec: TableSpec, column: str, after: tuple[str, str | None] | None, limit: int
) -> list[tuple[str, str, dict[str, Any]]]:
    """Up to `limit` rows past `after` ((changed-at, key) read up to; a key of None: from that changed-at
    on), as (key, changed-at, columns) in (changed-at, key) order. Rows with no changed-at are left to
    the full pass."""
    types = column_types(raw, spec, [column, *spec.key_columns])
    col, key, kind = sql.Identifier(column), key_list(spec), sql.SQL(types[column])
    params: list[Any] = []
    if after is None:
        condition = sql.SQL("{} IS NOT NULL").format(col)
    elif after[1] is None:
        condition, params = sql.SQL("{} >= %s::{}").format(col, kind), [after[0]]
    else:
        values = key_values(spec, types, sql.SQL("%s::jsonb"))
        condition = sql.SQL("({}, {}) > (%s::{}, {})").format(col, key, kind, values)
        params = [after[0], *[after[1]] * len(spec.key_columns)]  # the key once per key column
    where = sql.SQL("WHERE {} ORDER BY {}, {} LIMIT {}").format(condition, col, key, sql.Literal(int(limit)))
    return select_rows(raw, spec, where, params, sql.SQL("{}::text").format(col))


def cutoff(raw: psycopg.Connection, spec: TableSpec, column: str, lookback_seconds: float) -> str:
    """How far a cursor may be stored: the source's clock minus the look-back, in the column's type."""
    return raw.execute(
        sql.SQL("SELECT ({} - make_interval(secs => %s))::text").format(_clock(raw, spec, column)),
        [lookback_seconds],
    ).fetchone()[0]


def earlier(raw: psycopg.Connection, spec: TableSpec, column: str, a: str, b: str) -> bool:
    """Whether changed-at `a` is before `b` (compared as the column's type, not as text)."""
    kind = sql.SQL(column_types(raw, spec, [column])[column])
    return raw.execute(sql.SQL("SELECT %s::{0} < %s::{0}").format(kind), [a, b]).fetchone()[0]


def unread(raw: psycopg.Connection, spec: TableSpec, column: str, seen: str | None) -> dict[str, Any]:
    """Rows changed after the newest changed-at read, and the age of the oldest of them (seconds)."""
    col = sql.Identifier(column)
    where = (
        sql.SQL("{} IS NOT NULL").format(col)
        if seen is None
        else sql.SQL("{} > %s::{}").format(col, sql.SQL(column_types(raw, spec, [column])[column]))
    )
    queued, oldest = raw.execute(
        sql.SQL("SELECT count(*), extract(epoch FROM {clock} - min({col})) FROM {table} WHERE {where}").format(
            clock=_clock(raw, spec, column), col=col, table=spec.qualified, where=where
        ),
        [] if seen is None else [seen],
    ).fetchone()
    return {"queued": int(queued), "lag_seconds": round(max(float(oldest or 0.0), 0.0), 3) if queued else 0.0}


def all_keys(raw: psycopg.Connection, spec: TableSpec) -> Iterator[str]:
    """Every row's key (jsonb text), streamed through a server-side cursor (call inside a transaction)."""
    with raw.cursor(name="onnxvec_all_keys") as cursor:
        cursor.itersize = 5000
        cursor.execute(sql.SQL("SELECT jsonb_build_array({})::text FROM {}").format(key_list(spec), spec.qualified))
        for (key,) in cursor:
            yield key
