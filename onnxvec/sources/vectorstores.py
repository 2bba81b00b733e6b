"""Rows of another library's pgvector table, read with their vectors so they can be imported without
embedding them again: LangChain's `PGVector` (two shared tables, rows of one named collection), its
`PGVectorStore` (one table per store) and LlamaIndex's `PGVectorStore` (`data_<table_name>`).

Each layout is a few column names; one reader pages through any of them by key (keyset pagination),
so a table of millions of rows never sits in memory. Names from the user reach SQL only as
`psycopg.sql.Identifier` or bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from onnxvec.errors import StoreError
from onnxvec.sources.table import parse_table

LANGCHAIN_EMBEDDINGS = ("public", "langchain_pg_embedding")  # PGVector's tables, in the default schema
LANGCHAIN_COLLECTIONS = ("public", "langchain_pg_collection")
FORMATS = ("langchain", "llamaindex")


@dataclass(frozen=True)
class ForeignRow:
    external_id: str | None  # LlamaIndex's node_id may be NULL
    text: str | None
    metadata: Any
    vector: np.ndarray | None


@dataclass(frozen=True)
class Layout:
    """Where a store keeps its rows: a table, its key (the order pages are read in), the columns of id,
    text, metadata and vector, and a collection name when the table holds several (PGVector)."""

    schema: str
    table: str
    key: str
    id_column: str
    text_column: str
    metadata_column: str
    vector_column: str
    collection: str | None = None

    @property
    def label(self) -> str:
        where = f"{self.schema}.{self.table}"
        return f"{where} (collection {self.collection!r})" if self.collection else where


def locate(raw: psycopg.Connection, source: str, name: str) -> Layout:
    """The layout of the store `name` in this database; StoreError when there is none such.

    langchain: a table `name` with PGVectorStore's columns, else PGVector's collection `name`.
    llamaindex: the store's table `data_<name>` (or a table called `name` itself).
    """
    if source not in FORMATS:
        raise StoreError(f"--from is one of {', '.join(FORMATS)}, not {source!r}", "from")
    if source == "llamaindex":
        schema, table = parse_table(name)
        for candidate in (f"data_{table}", table):
            if _columns(raw, schema, candidate) >= {"id", "text", "metadata_", "node_id", "embedding"}:
                return Layout(schema, candidate, "id", "node_id", "text", "metadata_", "embedding")
        raise StoreError(f"no LlamaIndex PGVectorStore table data_{table} (or {table}) in schema {schema}")
    try:  # a PGVector collection's name need not be a table name
        schema, table = parse_table(name)
    except StoreError:
        schema, table = "", ""
    if table and _columns(raw, schema, table) >= {"langchain_id", "content", "embedding", "langchain_metadata"}:
        return Layout(schema, table, "langchain_id", "langchain_id", "content", "langchain_metadata", "embedding")
    if not _columns(raw, *LANGCHAIN_EMBEDDINGS) >= {"id", "collection_id", "embedding", "document", "cmetadata"}:
        raise StoreError(f"no LangChain PGVectorStore table {name!r} and no PGVector tables in this database")
    found = raw.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE name = %s)").format(sql.Identifier(*LANGCHAIN_COLLECTIONS)),
        [name],
    ).fetchone()[0]
    if not found:
        raise StoreError(f"no LangChain PGVector collection {name!r} in {'.'.join(LANGCHAIN_COLLECTIONS)}")
    return Layout(*LANGCHAIN_EMBEDDINGS, "id", "id", "document", "cmetadata", "embedding", name)


def _columns(raw: psycopg.Connection, schema: str, table: str) -> set[str]:
    """The column names of a table (empty when there is no such table)."""
    rows = raw.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        [sql.Identifier(schema, table).as_string(raw)],
    )
    return {name for (name,) in rows}


def read(raw: psycopg.Connection, layout: Layout, batch: int = 500) -> Iterator[list[ForeignRow]]:
    """Every row of the store, `batch` at a time in key order (each page starts after the last key of the
    one before); the vectors as float32 arrays (the connection must know pgvector's types)."""
    key = sql.Identifier(layout.key)
    columns = sql.SQL(", ").join(
        [
            key,
            sql.SQL("CAST({} AS text)").format(sql.Identifier(layout.id_column)),
            *map(sql.Identifier, (layout.text_column, layout.metadata_column)),
            # halfvec and real[] columns (some LangChain forks) cast to vector as pgvector defines it
            sql.SQL("CAST({} AS vector)").format(sql.Identifier(layout.vector_column)),
        ]
    )
    rows_of: sql.Composable = sql.SQL("true")
    params: list[Any] = []
    if layout.collection is not None:
        rows_of = sql.SQL("collection_id = (SELECT uuid FROM {} WHERE name = %s)").format(
            sql.Identifier(*LANGCHAIN_COLLECTIONS)
        )
        params = [layout.collection]
    table = sql.Identifier(layout.schema, layout.table)
    # ORDER BY 1, the key: by name it can be ambiguous (the id is the key again, cast to text)
    first = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY 1 LIMIT %s").format(columns, table, rows_of)
    after = sql.SQL("SELECT {} FROM {} WHERE {} AND {} > %s ORDER BY 1 LIMIT %s").format(columns, table, rows_of, key)
    rows = raw.execute(first, [*params, batch]).fetchall()
    while rows:
        yield [ForeignRow(eid, text, meta, None if v is None else v.to_numpy()) for _, eid, text, meta, v in rows]
        rows = raw.execute(after, [*params, rows[-1][0], batch]).fetchall()
