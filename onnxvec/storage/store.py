"""All SQL against the vector store: collections with their metric and HNSW index, chunks, search.

Every collection's vectors live in the shared ``chunks`` table (untyped ``vector`` column). Each
collection gets a partial HNSW index on ``embedding::vector(<dims>)`` with the opclass of its metric,
restricted to ``collection_id = <id>``; queries repeat that exact expression and predicate (as
literals, both come from the collections row) so the planner uses the collection's own index.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Connection, text

from onnxvec.errors import CollectionNotFound, FilterError, StoreError
from onnxvec.values import unstorable, without_paths

Metric = Literal["cosine", "l2", "ip"]
OPCLASS: dict[str, str] = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}
OPERATOR: dict[str, str] = {"cosine": "<=>", "l2": "<->", "ip": "<#>"}
MAX_K = 1000  # pgvector's largest hnsw.ef_search
MAX_NAME = 200  # characters of a collection name (a unique btree key must stay far under 2,704 bytes)
# up to this many chunks a collection is searched exactly: a scan of a few thousand vectors takes a few
# ms, while HNSW on small, near-duplicate collections missed the true top-1 at ef_search 100
# (tests/test_worker.py: 400 chunks from six 8-word vocabularies; ef_search 200 found it)
EXACT_SEARCH_MAX_CHUNKS = 5000


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    model: str
    dims: int
    metric: Metric
    hnsw_m: int
    hnsw_ef_construction: int
    chunk_tokens: int
    chunk_overlap: int
    hidden_metadata: tuple[str, ...] = ()  # dotted metadata paths search never returns nor filters on

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_metadata", tuple(self.hidden_metadata))  # a text[] reads as a list

    @property
    def index_name(self) -> str:
        return f"chunks_hnsw_{self.id}"

    @property
    def vector_expr(self) -> str:
        return f"(embedding::vector({int(self.dims)}))"


@dataclass(frozen=True)
class ChunkRow:
    ordinal: int
    text: str
    content_hash: str
    token_count: int
    embedding: np.ndarray


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    external_id: str
    source: str | None
    metadata: dict[str, Any]
    ordinal: int
    text: str
    distance: float
    score: float


_REGISTERED: weakref.WeakSet = weakref.WeakSet()


def vector_connection(conn: Connection) -> psycopg.Connection:
    """The psycopg connection under `conn`, taught pgvector's types once (for COPY and reading vectors)."""
    raw = conn.connection.driver_connection
    if raw not in _REGISTERED:
        register_vector(raw)
        _REGISTERED.add(raw)
    return raw


_COLLECTION_COLUMNS = (
    "id, name, model, dims, metric, hnsw_m, hnsw_ef_construction, chunk_tokens, chunk_overlap, hidden_metadata"
)


def create_collection(
    conn: Connection,
    name: str,
    model: str,
    dims: int,
    metric: Metric = "cosine",
    *,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 64,
    chunk_tokens: int = 256,
    chunk_overlap: int = 32,
    hidden_metadata: Iterable[str] = (),
) -> Collection:
    """Insert a collection and build its (empty, so instant) HNSW index in the same transaction."""
    hidden = _metadata_paths(hidden_metadata)
    if metric not in OPCLASS:
        raise StoreError(f"metric must be one of {sorted(OPCLASS)}, not {metric!r}")
    if not name or len(name) > MAX_NAME or unstorable(name):
        raise StoreError(f"a collection name is 1 to {MAX_NAME} characters of valid text, not {name[:40]!r}")
    row = conn.execute(
        text(
            f"INSERT INTO collections (name, model, dims, metric, hnsw_m, hnsw_ef_construction, chunk_tokens,"
            f" chunk_overlap, hidden_metadata) VALUES (:name, :model, :dims, :metric, :m, :ef, :ct, :co, :hidden)"
            f" ON CONFLICT (name) DO NOTHING RETURNING {_COLLECTION_COLUMNS}"
        ),
        {
            "name": name,
            "model": model,
            "dims": dims,
            "metric": metric,
            "m": hnsw_m,
            "ef": hnsw_ef_construction,
            "ct": chunk_tokens,
            "co": chunk_overlap,
            "hidden": hidden,
        },
    ).one_or_none()
    if row is None:
        raise StoreError(f"collection {name!r} already exists")
    collection = Collection(*row)
    create_index(conn, collection)
    return collection


def create_index(conn: Connection, collection: Collection) -> None:
    """The collection's own HNSW index: its vectors only, typed to its dims, with its metric's opclass."""
    conn.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {collection.index_name} ON chunks USING hnsw"
            f" ({collection.vector_expr} {OPCLASS[collection.metric]})"
            f" WITH (m = {int(collection.hnsw_m)}, ef_construction = {int(collection.hnsw_ef_construction)})"
            f" WHERE collection_id = {int(collection.id)}"
        )
    )


def drop_index(conn: Connection, collection: Collection) -> None:
    """Before dropping a collection, or to build the index after a bulk load."""
    conn.execute(text(f"DROP INDEX IF EXISTS {collection.index_name}"))


def get_collection(conn: Connection, name: str) -> Collection:
    return _one_collection(conn, "name = :key", name, f"collection {name!r} does not exist")


def get_collection_by_id(conn: Connection, collection_id: int) -> Collection:
    return _one_collection(conn, "id = :key", collection_id, f"collection {collection_id} does not exist")


def _one_collection(conn: Connection, where: str, key: object, missing: str) -> Collection:
    if isinstance(key, str) and unstorable(key):  # no collection can have such a name
        raise CollectionNotFound(missing)
    row = conn.execute(text(f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE {where}"), {"key": key}).one_or_none()
    if row is None:
        raise CollectionNotFound(missing)
    return Collection(*row)


def list_collections(conn: Connection) -> list[Collection]:
    rows = conn.execute(text(f"SELECT {_COLLECTION_COLUMNS} FROM collections ORDER BY name"))
    return [Collection(*row) for row in rows]


def hide_metadata(conn: Connection, name: str, paths: Iterable[str]) -> Collection:
    """Replace the collection's hidden metadata paths (none: everything is shown again)."""
    row = conn.execute(
        text(f"UPDATE collections SET hidden_metadata = :paths WHERE name = :name RETURNING {_COLLECTION_COLUMNS}"),
        {"paths": _metadata_paths(paths), "name": name},
    ).one_or_none()
    if row is None:
        raise CollectionNotFound(f"collection {name!r} does not exist")
    return Collection(*row)


def _metadata_paths(paths: Iterable[str]) -> list[str]:
    cleaned = sorted({path.strip() for path in paths if path.strip()})
    for path in cleaned:
        if unstorable(path) or "" in path.split("."):
            raise StoreError(f"a hidden metadata path is dotted keys such as owner.email, not {path[:40]!r}")
    return cleaned


def drop_collection(conn: Connection, name: str) -> None:
    """Delete a collection, its documents and chunks, and its index."""
    collection = get_collection(conn, name)
    drop_index(conn, collection)
    conn.execute(text("DELETE FROM collections WHERE id = :id"), {"id": collection.id})


def write_chunks(conn: Connection, collection: Collection, document_id: int, chunks: Iterable[ChunkRow]) -> int:
    """COPY chunks and their vectors in binary; runs inside the caller's transaction."""
    raw = vector_connection(conn)
    count = 0
    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY chunks (collection_id, document_id, ordinal, text, content_hash, token_count, embedding)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int4", "int8", "int4", "text", "text", "int4", "vector"])
        for chunk in chunks:
            if chunk.embedding.shape != (collection.dims,):
                raise StoreError(
                    f"{collection.name} stores {collection.dims}-d vectors, got shape {chunk.embedding.shape}"
                )
            copy.write_row(
                [
                    collection.id,
                    document_id,
                    chunk.ordinal,
                    chunk.text,
                    chunk.content_hash,
                    chunk.token_count,
                    np.asarray(chunk.embedding, dtype=np.float32),
                ]
            )
            count += 1
    return count


def search(
    conn: Connection,
    collection: Collection,
    query: np.ndarray,
    k: int = 10,
    *,
    filter: dict[str, Any] | None = None,
    ef_search: int = 100,
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
        text("SELECT count(*) FROM (SELECT 1 FROM chunks WHERE collection_id = :c LIMIT :n) s"),
        {"c": collection.id, "n": EXACT_SEARCH_MAX_CHUNKS + 1},
    ).scalar_one()
    distance = f"{collection.vector_expr} {OPERATOR[collection.metric]} CAST(:q AS vector({int(collection.dims)}))"
    # an ORDER BY the HNSW index cannot serve makes a small collection's search exact (its rows come
    # through the collection_id index and are sorted), without touching the session's planner settings
    order = f"({distance}) + 0" if chunks <= EXACT_SEARCH_MAX_CHUNKS else distance
    where = f"c.collection_id = {int(collection.id)}"
    params: dict[str, Any] = {"q": vector, "k": int(k)}
    if filter:
        clauses, filter_params = metadata_filter(filter, collection.hidden_metadata)
        check_range_types(conn, collection, filter)
        where += "".join(f" AND {clause}" for clause in clauses)
        params |= filter_params
    rows = conn.execute(
        text(
            "SELECT c.id, c.document_id, d.external_id, d.source, d.metadata, c.ordinal, c.text,"
            f" {distance} AS distance"
            f" FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where}"
            f" ORDER BY {order} LIMIT :k"
        ),
        params,
    )
    return [
        Hit(
            *row[:4],
            without_paths(row[4], collection.hidden_metadata),
            *row[5:7],
            distance=float(row[7]),
            score=score(collection.metric, float(row[7])),
        )
        for row in rows
    ]


COMPARISONS = {"$eq": "==", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
Scalar = str | int | float | bool | None


def metadata_filter(filter: dict[str, Any], hidden: Iterable[str] = ()) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions on document metadata, all of which must hold.

    ``{"key": value}`` is equality (one jsonb containment test for all of them, which the metadata
    GIN index serves); ``{"key": {"$in": [...]}}``, ``$nin``, ``$ne``, ``$gt``, ``$gte``, ``$lt``,
    ``$lte`` become SQL/JSON path tests, which compare numbers as numbers and strings as strings
    and are false (never an error) when the key is missing or holds another type. A key the collection
    hides (or one under which it hides a path) cannot be filtered on: its values would leak through.
    """
    problem = unstorable(filter)
    if problem:
        raise FilterError(f"the filter holds {problem}")
    for key in filter:
        if any(path == key or path.startswith(key + ".") for path in hidden):
            raise FilterError(f"filter on {key!r}: this collection hides that metadata")
    equal: dict[str, Any] = {}
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for key, condition in filter.items():
        if not isinstance(condition, dict):
            equal[key] = _scalar(key, condition)
            continue
        if not condition:
            raise FilterError(f"filter on {key!r}: give at least one operator")
        for op, value in condition.items():
            n = len(params)
            field = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if op in ("$in", "$nin"):
                if not isinstance(value, list) or not value:
                    raise FilterError(f"filter on {key!r}: {op} takes a non-empty list")
                test = " || ".join(f"@ == $v{i}" for i in range(len(value)))
                variables = {f"v{i}": _scalar(key, v) for i, v in enumerate(value)}
                negate = op == "$nin"
            elif op in COMPARISONS:
                test, variables, negate = f"@ {COMPARISONS[op]} $v0", {"v0": _scalar(key, value)}, False
                if op == "$ne":  # also true where the key is missing, as $nin
                    test, negate = "@ == $v0", True
            else:
                raise FilterError(
                    f"filter on {key!r}: unknown operator {op!r} (use {', '.join(['$in', '$nin', *COMPARISONS])})"
                )
            test_sql = f"jsonb_path_exists(d.metadata, CAST(:p{n} AS jsonpath), CAST(:p{n}v AS jsonb))"
            clauses.append(("NOT " if negate else "") + test_sql)
            params[f"p{n}"] = f"{field} ? ({test})"
            params[f"p{n}v"] = json.dumps(variables)
    if equal:
        clauses.insert(0, "d.metadata @> CAST(:equal AS jsonb)")
        params["equal"] = json.dumps(equal)
    return clauses, params


RANGES = {"$gt", "$gte", "$lt", "$lte"}
JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number"}


def check_range_types(conn: Connection, collection: Collection, filter: dict[str, Any]) -> None:
    """A range test against a value of another type than the collection stores under that key (a
    string against numbers) matches nothing: a mistake to report, not an empty result to return."""
    for key, condition in filter.items():
        if not isinstance(condition, dict):
            continue
        for op, value in condition.items():
            if op not in RANGES or type(value) not in JSON_TYPES:
                continue
            stored = set(
                conn.execute(
                    text(
                        "SELECT DISTINCT t FROM (SELECT jsonb_typeof(metadata -> :key) AS t FROM documents"
                        " WHERE collection_id = :c AND metadata ? :key LIMIT 100) sample"
                    ),
                    {"key": key, "c": collection.id},
                ).scalars()
            )
            if stored and JSON_TYPES[type(value)] not in stored:
                raise FilterError(
                    f"filter on {key!r}: {op} compares with a {JSON_TYPES[type(value)]}, but {collection.name} "
                    f"stores {' and '.join(sorted(stored))} values under {key!r}"
                )


def _scalar(key: str, value: Any) -> Scalar:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise FilterError(f"filter on {key!r}: compare with a string, number, boolean or null, not {value!r}")
    return value


def score(metric: str, distance: float) -> float:
    """Higher is better, whatever the metric: cosine similarity, inner product, or negated L2 distance."""
    return 1.0 - distance if metric == "cosine" else -distance  # pgvector's <#> is the negative inner product
