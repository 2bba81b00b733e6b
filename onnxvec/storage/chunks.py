"""Chunks, their vectors and their tsvectors: binary COPY in; out, the collection's nearest-neighbour
scan (its metric's operator, its own index) scored so higher is better, and its full-text match ranked
by ts_rank_cd, each with the metadata filter inside the query."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Connection, text

from onnxvec.config import default
from onnxvec.errors import StoreError
from onnxvec.storage.collections import Collection
from onnxvec.storage.filters import check_range_types, metadata_filter
from onnxvec.values import without_paths

OPERATOR: dict[str, str] = {"cosine": "<=>", "l2": "<->", "ip": "<#>"}


MAX_K = 1000  # pgvector's largest hnsw.ef_search


# up to this many chunks a collection is searched exactly: a scan of a few thousand vectors takes a few
# ms, while HNSW on small, near-duplicate collections missed the true top-1 at ef_search 100
# (tests/integration/test_worker.py: 400 chunks from six 8-word vocabularies; ef_search 200 found it)
EXACT_SEARCH_MAX_CHUNKS = 5000


@dataclass(frozen=True)
class ChunkRow:
    ordinal: int
    text: str
    content_hash: str
    token_count: int
    embedding: np.ndarray
    section: str | None = None  # the headings the chunk starts under


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    external_id: str
    source: str | None
    metadata: dict[str, Any]
    ordinal: int
    text: str
    distance: float | None  # None: not found by the vector scan (full text only)
    score: float
    title: str | None = None  # the document's title (its metadata's "title"), for showing the hit
    section: str | None = None


_REGISTERED: weakref.WeakSet = weakref.WeakSet()


def vector_connection(conn: Connection) -> psycopg.Connection:
    """The psycopg connection under `conn`, taught pgvector's types once (for COPY and reading vectors)."""
    raw = conn.connection.driver_connection
    if raw not in _REGISTERED:
        register_vector(raw)
        _REGISTERED.add(raw)
    return raw


# COPY cannot compute the tsvector: rows are copied here, then moved into chunks with it. (Filling it by an
# UPDATE after the COPY would write every row twice, HNSW index entry included.)
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS chunk_rows (document_id int8, ordinal int4, text text, content_hash text,"
    " token_count int4, embedding vector, section text) ON COMMIT DELETE ROWS"
)


def write_chunks(conn: Connection, collection: Collection, document_id: int, chunks: Iterable[ChunkRow]) -> int:
    """COPY one document's chunks and their vectors in binary, with their tsvector in the collection's
    language; runs inside the caller's transaction."""
    return write_chunks_of(conn, collection, ((document_id, chunk) for chunk in chunks))


def write_chunks_of(conn: Connection, collection: Collection, rows: Iterable[tuple[int, ChunkRow]]) -> int:
    """`write_chunks` for many documents at once, (document id, chunk) pairs in one COPY: an import
    writes a batch of one-chunk documents without a statement per document."""
    raw = vector_connection(conn)
    count = 0
    conn.execute(text(_STAGING))
    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY chunk_rows (document_id, ordinal, text, content_hash, token_count, embedding, section)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "int4", "text", "text", "int4", "vector", "text"])
        for document_id, chunk in rows:
            if chunk.embedding.shape != (collection.dims,):
                raise StoreError(
                    f"{collection.name} stores {collection.dims}-d vectors, got shape {chunk.embedding.shape}"
                )
            copy.write_row(
                [
                    document_id,
                    chunk.ordinal,
                    chunk.text,
                    chunk.content_hash,
                    chunk.token_count,
                    np.asarray(chunk.embedding, dtype=np.float32),
                    chunk.section,
                ]
            )
            count += 1
    conn.execute(
        text(
            "WITH moved AS (DELETE FROM chunk_rows RETURNING *)"
            " INSERT INTO chunks (collection_id, version_id, document_id, ordinal, text, content_hash, token_count,"
            " embedding, section, tsv) SELECT :c, :v, document_id, ordinal, text, content_hash, token_count,"
            " embedding, section, to_tsvector(CAST(:language AS regconfig), text) FROM moved"
        ),
        {"c": collection.id, "v": collection.version_id, "language": collection.language},
    )
    return count


def replace_chunks(conn: Connection, collection: Collection, rows: dict[int, list[ChunkRow]]) -> int:
    """Each document's chunks in the collection's version, replaced by these (none: removed)."""
    conn.execute(
        text("DELETE FROM chunks WHERE version_id = :v AND document_id = ANY(:ids)"),
        {"v": collection.version_id, "ids": list(rows)},
    )
    return write_chunks_of(conn, collection, ((doc_id, chunk) for doc_id, pieces in rows.items() for chunk in pieces))


def search(
    conn: Connection,
    collection: Collection,
    query: np.ndarray,
    k: int = 10,
    *,
    filter: dict[str, Any] | None = None,
    ef_search: int = default("ef_search"),
) -> list[Hit]:
    """Top-k chunks by the collection's metric, filtered on document metadata during the index scan.

    Iterative index scans (pgvector 0.8) keep scanning the HNSW graph until k rows pass the filter,
    so a selective filter does not starve the result as a post-filter would.
    """
    vector = np.asarray(query, dtype=np.float32)
    if vector.shape != (collection.dims,):
        raise StoreError(f"{collection.name} holds {collection.dims}-d vectors, the query has {vector.shape}")
    if not 1 <= k <= MAX_K:
        raise StoreError(f"k must be between 1 and {MAX_K}, not {k}")
    vector_connection(conn)  # the query vector is bound as a pgvector value
    conn.execute(text(f"SET LOCAL hnsw.ef_search = {min(max(int(ef_search), int(k)), MAX_K)}"))
    conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
    chunks = conn.execute(
        text("SELECT count(*) FROM (SELECT 1 FROM chunks WHERE version_id = :v LIMIT :n) s"),
        {"v": collection.version_id, "n": EXACT_SEARCH_MAX_CHUNKS + 1},
    ).scalar_one()
    distance = f"{collection.vector_expr} {OPERATOR[collection.metric]} CAST(:q AS vector({int(collection.dims)}))"
    # an ORDER BY the HNSW index cannot serve makes a small collection's search exact (its rows come
    # through the collection_id index and are sorted), without touching the session's planner settings
    order = f"({distance}) + 0" if chunks <= EXACT_SEARCH_MAX_CHUNKS else distance
    where, params = _where(conn, collection, filter)
    rows = conn.execute(
        text(
            f"SELECT {_HIT_COLUMNS}, {distance} AS distance"
            f" FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where}"
            f" ORDER BY {order} LIMIT :k"
        ),
        params | {"q": vector, "k": int(k)},
    )
    return [_hit(collection, row, row[8], score(collection.metric, float(row[8]))) for row in rows]


# characters of a query full text reads (the embedding reads its first tokens only, too): a tsvector
# holds at most 1 MB, and no question is this long
MAX_TEXT_QUERY = 10_000


# the query's lexemes (its words, stemmed, stop words dropped) joined by OR, each quoted as tsquery
# input wants it (backslashes and quotes doubled); NULL when it has none, which matches nothing
_ANY_LEXEME = (
    r"SELECT CAST(string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ')"
    " AS tsquery) AS query FROM unnest(to_tsvector(CAST(:language AS regconfig), :query))"
)


def text_search(
    conn: Connection, collection: Collection, query: str, k: int = 10, *, filter: dict[str, Any] | None = None
) -> list[Hit]:
    """Top-k chunks containing any of the query's words (stemmed in the collection's language), by
    ts_rank_cd, filtered on document metadata in the same query. Any word rather than every word: a
    natural question's words are rarely all in the chunk that answers it. No words (only stop words):
    no hits. Only the first MAX_TEXT_QUERY characters are read."""
    if not 1 <= k <= MAX_K:
        raise StoreError(f"k must be between 1 and {MAX_K}, not {k}")
    where, params = _where(conn, collection, filter)
    words = query[:MAX_TEXT_QUERY].replace("\x00", " ")  # Postgres text holds no NUL: it only separates words
    rows = conn.execute(
        text(
            f"WITH q AS ({_ANY_LEXEME}) SELECT {_HIT_COLUMNS}, ts_rank_cd(c.tsv, q.query) AS rank"
            f" FROM q, chunks c JOIN documents d ON d.id = c.document_id WHERE {where} AND c.tsv @@ q.query"
            " ORDER BY rank DESC, c.id LIMIT :k"
        ),
        params | {"language": collection.language, "query": words, "k": int(k)},
    )
    return [_hit(collection, row, None, float(row[8])) for row in rows]


_HIT_COLUMNS = "c.id, c.document_id, d.external_id, d.source, d.metadata, c.ordinal, c.text, c.section"


def _where(conn: Connection, collection: Collection, filter: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The chunks of the collection's version that pass the metadata filter: the same conditions for
    every kind of search (the version predicate is the one its HNSW index is partial on)."""
    where = f"c.version_id = {int(collection.version_id)}"
    if not filter:
        return where, {}
    clauses, params = metadata_filter(filter, collection.hidden_metadata)
    check_range_types(conn, collection, filter)
    return where + "".join(f" AND {clause}" for clause in clauses), params


def _hit(collection: Collection, row: Any, distance: float | None, score: float) -> Hit:
    """A row of _HIT_COLUMNS (and its distance or rank) as a hit; hidden metadata stays hidden."""
    metadata = without_paths(row[4], collection.hidden_metadata)
    title = metadata.get("title")
    return Hit(
        *row[:4],
        metadata,
        *row[5:7],
        distance=None if distance is None else float(distance),
        score=score,
        title=title if isinstance(title, str) else None,
        section=row[7],
    )


def score(metric: str, distance: float) -> float:
    """Higher is better, whatever the metric: cosine similarity, inner product, or negated L2 distance."""
    return 1.0 - distance if metric == "cosine" else -distance  # pgvector's <#> is the negative inner product


def existing_vectors(conn: Connection, doc_ids: Sequence[int], model: str) -> dict[tuple[int, str], np.ndarray]:
    """Vectors `model` gave these documents' chunks, in any version of their collection, by (document,
    chunk content hash): unchanged chunks are not embedded again, nor those a new version with the same
    model re-uses (a metric or chunking change)."""
    cur = vector_connection(conn).execute(
        "SELECT DISTINCT ON (c.document_id, c.content_hash) c.document_id, c.content_hash, c.embedding"
        " FROM chunks c JOIN embedding_versions v ON v.id = c.version_id"
        " WHERE c.document_id = ANY(%s) AND v.model = %s",
        (list(doc_ids), model),
    )
    return {(doc_id, digest): vector.to_numpy() for doc_id, digest, vector in cur}
