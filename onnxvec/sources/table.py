"""Rows of a Postgres table as documents: the table's shape checked, and rows loaded by key and
rendered to text. (What keeps a table in step lives beside it: triggers.py, polling.py.)

Every identifier a user gives (schema, table, columns) reaches SQL through `psycopg.sql.Identifier`.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from onnxvec.errors import StoreError
from onnxvec.sources.files import SourceDocument
from onnxvec.values import unstorable


@dataclass(frozen=True)
class TableSpec:
    """Which table a source reads and how a row becomes a document."""

    schema: str
    table: str
    key_columns: tuple[str, ...]
    text_column: str | None = None
    template: str | None = None
    metadata_columns: tuple[str, ...] = ()

    @property
    def qualified(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def label(self) -> str:
        """The table as hits name it: schema.table."""
        return f"{self.schema}.{self.table}"

    def columns(self) -> list[str]:
        """Every column a document needs: the key, the text (column or template fields), the metadata."""
        text = [self.text_column] if self.text_column else template_fields(self.template or "")
        return list(dict.fromkeys([*self.key_columns, *text, *self.metadata_columns]))


def template_fields(template: str) -> list[str]:
    """The column names a template such as "{title}\\n\\n{body}" uses: plain names only (no attribute,
    index or nested field, so a template reads columns and nothing else)."""
    try:
        parts = [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise StoreError(f"the template is not valid: {exc}") from exc
    fields = [name for name, _ in parts]
    if not fields or any(not name or any(mark in name for mark in ".[]") or "{" in spec for name, spec in parts):
        raise StoreError("the template names its columns in braces, e.g. '{title}\\n\\n{body}'")
    return list(dict.fromkeys(fields))


def parse_table(name: str) -> tuple[str, str]:
    """`schema.table` or `table` (schema public). A name holding a dot is quoted: '"my.table"'."""
    if name.startswith('"') or '"' in name:
        parts = [part.replace('""', '"') for part in _split_quoted(name)]
    else:
        parts = name.split(".")
    if len(parts) == 1:
        parts = ["public", *parts]
    if len(parts) != 2 or not all(parts) or any(unstorable(part) for part in parts):
        raise StoreError(f"a table is [schema.]table, not {name[:80]!r}")
    return parts[0], parts[1]


def _split_quoted(name: str) -> list[str]:
    parts, current, quoted, i = [], "", False, 0
    while i < len(name):
        ch = name[i]
        if ch == '"' and quoted and name[i + 1 : i + 2] == '"':
            current += '""'
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    if quoted:
        raise StoreError(f"an unclosed quote in the table name {name[:80]!r}")
    return [*parts, current]


def inspect(raw: psycopg.Connection, spec: TableSpec) -> TableSpec:
    """The spec checked against the database: the table exists and can be read, its key is the given
    columns or its primary key, and every named column exists. StoreError says what is wrong."""
    oid = raw.execute("SELECT to_regclass(%s)::oid", [spec.qualified.as_string(raw)]).fetchone()[0]
    if oid is None:
        raise StoreError(f"the table {spec.label} does not exist")
    if raw.execute("SELECT relkind FROM pg_class WHERE oid = %s", [oid]).fetchone()[0] not in ("r", "p"):
        raise StoreError(f"{spec.label} is not a table (a view or another kind of relation has no triggers)")
    if not raw.execute("SELECT has_table_privilege(%s, 'SELECT')", [oid]).fetchone()[0]:
        raise StoreError(f"this database user may not read {spec.label}")
    columns = {
        name
        for (name,) in raw.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", [oid]
        )
    }
    keys = spec.key_columns
    if not keys:
        keys = tuple(
            name
            for (name,) in raw.execute(
                "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                " WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
                [oid],
            )
        )
        if not keys:
            raise StoreError(f"{spec.label} has no primary key; name the key with --id-column")
    checked = TableSpec(spec.schema, spec.table, keys, spec.text_column, spec.template, spec.metadata_columns)
    missing = [name for name in checked.columns() if name not in columns]
    if missing:
        raise StoreError(f"{spec.label} has no column {', '.join(repr(m) for m in missing)}")
    _check_key_columns(raw, checked, oid)
    unique = raw.execute(
        "SELECT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL"
        " AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a"
        "      WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = %s::text[])",
        [oid, sorted(keys)],
    ).fetchone()[0]
    if not unique:
        raise StoreError(f"({', '.join(keys)}) is not a unique key of {spec.label}: a unique index must cover it")
    return checked


def _check_key_columns(raw: psycopg.Connection, spec: TableSpec, oid: int) -> None:
    """A key is NOT NULL (a unique index lets NULLs repeat, and NULL equals nothing) and compares
    exactly as JSON (not a float, nor a numeric with decimals: 12.00 and 12.0 are one number, two texts)."""
    for name, kind, not_null in raw.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
        " WHERE attrelid = %s AND attname = ANY(%s)",
        [oid, list(spec.key_columns)],
    ):
        if not not_null:
            raise StoreError(f"the key column {name!r} of {spec.label} may be NULL: a key must be NOT NULL")
        if kind in ("real", "double precision") or (
            kind.startswith("numeric") and not re.fullmatch(r"numeric\(\d+,0\)", kind)
        ):
            raise StoreError(
                f"the key column {name!r} of {spec.label} is {kind}: a key must compare exactly"
                " (an integer, text, uuid, date or time, numeric(p,0))"
            )


def column_types(raw: psycopg.Connection, spec: TableSpec, columns: Sequence[str]) -> dict[str, str]:
    """The SQL types of named columns, to cast values kept as text back to them."""
    return dict(
        raw.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attname = ANY(%s) AND attnum > 0 AND NOT attisdropped",
            [spec.qualified.as_string(raw), list(columns)],
        ).fetchall()
    )


def key_list(spec: TableSpec) -> sql.Composed:
    """The key columns, comma-separated: `a, b`."""
    return sql.SQL(", ").join(sql.Identifier(c) for c in spec.key_columns)


def key_values(spec: TableSpec, types: dict[str, str], element: sql.Composable) -> sql.Composed:
    """A queued key (jsonb array `element`) as its columns' typed values, so an index on the key finds
    them (no table scan)."""
    return sql.SQL(", ").join(
        sql.SQL("({} ->> {})::{}").format(element, sql.Literal(i), sql.SQL(types[c]))
        for i, c in enumerate(spec.key_columns)
    )


def select_rows(
    raw: psycopg.Connection, spec: TableSpec, where: sql.Composable, params: Sequence[Any], lead: sql.Composable
) -> list[tuple[str, Any, dict[str, Any]]]:
    """Rows as (key as jsonb text, the `lead` expression's value, the columns a document needs)."""
    columns = spec.columns()
    query = sql.SQL("SELECT jsonb_build_array({key})::text, {lead}, {columns} FROM {table} {where}").format(
        key=key_list(spec),
        lead=lead,
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        table=spec.qualified,
        where=where,
    )
    return [(row[0], row[1], dict(zip(columns, row[2:], strict=True))) for row in raw.execute(query, params)]


def load_rows(raw: psycopg.Connection, spec: TableSpec, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The rows with these keys (jsonb text, as queued), by key; a key with no row is absent."""
    if not keys:
        return {}
    types = column_types(raw, spec, spec.key_columns)
    where = sql.SQL("WHERE ({key}) IN (SELECT {values} FROM unnest(%s::jsonb[]) AS e)").format(
        key=key_list(spec), values=key_values(spec, types, sql.SQL("e"))
    )
    return {key: row for key, _, row in select_rows(raw, spec, where, [list(keys)], sql.NULL)}


def same_keys_everywhere(raw: psycopg.Connection) -> None:
    """Key values print the same in every session that compares them (the triggers set the same):
    timestamps in UTC, intervals in one style. Call it at the start of a transaction."""
    raw.execute("SET LOCAL TimeZone = 'UTC'")
    raw.execute("SET LOCAL IntervalStyle = 'postgres'")


def external_id(source: str, key: str) -> str:
    """A row's document id: the source's name and the key (jsonb text; the value alone for a
    one-column key)."""
    values = json.loads(key)
    shown = str(values[0]) if len(values) == 1 else json.dumps(values, ensure_ascii=False)
    return f"{source}:{shown}"


def _jsonable(value: Any) -> Any:
    """A column value as JSON keeps it: numerics as numbers, dates and UUIDs as text; NaN and the
    infinities (which jsonb cannot hold) as text too."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.loads(json.dumps(value, default=str))


def document(source: str, spec: TableSpec, key: str, row: dict[str, Any]) -> SourceDocument:
    """The row rendered (its text column, or the template over its columns), with its metadata
    columns and its key. Whatever goes wrong with one row fails that row alone, with the reason: it
    is recorded as a failed document while the rest of the batch goes on."""
    metadata: dict[str, Any] = {"table": spec.label, "key": json.loads(key)}
    try:
        metadata = {name: _jsonable(row[name]) for name in spec.metadata_columns} | metadata
        if spec.text_column:
            value = row[spec.text_column]
            text = "" if value is None else str(value)
        else:
            text = (spec.template or "").format_map({k: "" if v is None else v for k, v in row.items()})
        error = None if text.strip() else "the row's text is empty"
        problem = unstorable(text) or unstorable(metadata)
        if problem:
            text, error = "", f"the row holds {problem}"
    except Exception as exc:  # noqa: BLE001 (a template over any column type: the row fails, not the batch)
        text, error = "", f"the row cannot be rendered: {type(exc).__name__}: {exc}"
    if error:
        metadata = {"table": spec.label, "key": metadata["key"]}
    return SourceDocument(external_id(source, key), spec.label, text, metadata, error)
