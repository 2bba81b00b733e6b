"""Polling a table where triggers cannot be installed (a replica, a database user without the right to
add triggers): rows whose changed-at column passed a cursor, in (changed-at, key) order, and every key
of the table for the full passes that find deleted rows.

The cursor is {"after": changed-at, "after_key": key or null, "read": [changed-at, key] read up to}.
"after" stays a look-back behind (see `cutoff`): a transaction that set its changed-at before another
one's but committed after it is still found by the next poll (rows in the look-back are read again;
an unchanged one costs a hash comparison). "read" is what `unread` counts from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from onnxvec.errors import StoreError
from onnxvec.sources.table import TableSpec, column_types, key_list, key_values, select_rows

POLLABLE = re.compile(r"timestamp(\(\d\))? with(out)? time zone")


def column_type(raw: psycopg.Connection, spec: TableSpec, column: str) -> str:
    """The changed-at column's type (with its precision); StoreError if it is gone or not a timestamp."""
    found = column_types(raw, spec, [column]).get(column)
    if found is None:
        raise StoreError(f"{spec.label} has no column {column!r}")
    if not POLLABLE.fullmatch(found):
        raise StoreError(f"--poll takes a timestamp column; {column!r} is {found}")
    return found


def _clock(kind: str) -> sql.Composable:
    """The source's clock in the column's type (a timestamp without time zone: in the server's default
    time zone, what now() stores there)."""
    if "without" not in kind:
        return sql.SQL("statement_timestamp()")
    return sql.SQL("(statement_timestamp() AT TIME ZONE (SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'))")


def _past(
    spec: TableSpec, types: dict[str, str], column: str, position: tuple[str, str | None] | None
) -> tuple[sql.Composable, list[Any]]:
    """The condition "past `position`" ((changed-at, key); a key of None: from that changed-at on; None:
    every row with a changed-at) and its parameters."""
    col, kind = sql.Identifier(column), sql.SQL(types[column])
    if position is None:
        return sql.SQL("{} IS NOT NULL").format(col), []
    if position[1] is None:
        return sql.SQL("{} >= %s::{}").format(col, kind), [position[0]]
    values = key_values(spec, types, sql.SQL("%s::jsonb"))
    condition = sql.SQL("({}, {}) > (%s::{}, {})").format(col, key_list(spec), kind, values)
    return condition, [position[0], *[position[1]] * len(spec.key_columns)]  # the key once per key column


def changed_rows(
    raw: psycopg.Connection, spec: TableSpec, column: str, after: tuple[str, str | None] | None, limit: int
) -> list[tuple[str, str, dict[str, Any]]]:
    """Up to `limit` rows past `after`, as (key, changed-at, columns) in (changed-at, key) order. Rows with
    no changed-at are left to the full pass."""
    types = column_types(raw, spec, spec.key_columns) | {column: column_type(raw, spec, column)}
    condition, params = _past(spec, types, column, after)
    col = sql.Identifier(column)
    where = sql.SQL("WHERE {} ORDER BY {}, {} LIMIT {}").format(condition, col, key_list(spec), sql.Literal(int(limit)))
    return select_rows(raw, spec, where, params, sql.SQL("{}::text").format(col))


def cutoff(raw: psycopg.Connection, spec: TableSpec, column: str, lookback_seconds: float) -> str:
    """How far a cursor may be stored: the source's clock minus the look-back, in the column's type. A
    row is read again for `lookback_seconds` after its changed-at, then never (while idle, nothing is
    read). A replica's replay delay counts against the look-back, like a late commit."""
    kind = column_type(raw, spec, column)
    return raw.execute(
        sql.SQL("SELECT ({} - make_interval(secs => %s))::text").format(_clock(kind)), [lookback_seconds]
    ).fetchone()[0]


def earlier(raw: psycopg.Connection, spec: TableSpec, column: str, a: str, b: str) -> bool:
    """Whether changed-at `a` is before `b` (compared as the column's type, not as text)."""
    kind = sql.SQL(column_type(raw, spec, column))
    return raw.execute(sql.SQL("SELECT %s::{0} < %s::{0}").format(kind), [a, b]).fetchone()[0]


def later(raw: psycopg.Connection, spec: TableSpec, column: str, a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether position `a` ((changed-at, key)) comes after `b`, in the order rows are read."""
    types = column_types(raw, spec, spec.key_columns) | {column: column_type(raw, spec, column)}
    values = key_values(spec, types, sql.SQL("%s::jsonb"))
    query = sql.SQL("SELECT (%s::{kind}, {values}) > (%s::{kind}, {values})").format(
        kind=sql.SQL(types[column]), values=values
    )
    n = len(spec.key_columns)
    return raw.execute(query, [a[0], *[a[1]] * n, b[0], *[b[1]] * n]).fetchone()[0]


def unread(raw: psycopg.Connection, spec: TableSpec, column: str, read: tuple[str, str] | None) -> dict[str, Any]:
    """Rows past the newest (changed-at, key) read, and the age of the oldest of them (seconds)."""
    kind = column_type(raw, spec, column)
    condition, params = _past(spec, column_types(raw, spec, spec.key_columns) | {column: kind}, column, read)
    col = sql.Identifier(column)
    queued, oldest = raw.execute(
        sql.SQL("SELECT count(*), extract(epoch FROM {clock} - min({col})) FROM {table} WHERE {condition}").format(
            clock=_clock(kind), col=col, table=spec.qualified, condition=condition
        ),
        params,
    ).fetchone()
    return {"queued": int(queued), "lag_seconds": round(max(float(oldest or 0.0), 0.0), 3) if queued else 0.0}


def all_keys(raw: psycopg.Connection, spec: TableSpec) -> Iterator[str]:
    """Every row's key (jsonb text), streamed through a server-side cursor (call inside a transaction)."""
    with raw.cursor(name="onnxvec_all_keys") as cursor:
        cursor.itersize = 5000
        cursor.execute(sql.SQL("SELECT jsonb_build_array({})::text FROM {}").format(key_list(spec), spec.qualified))
        for (key,) in cursor:
            yield key
