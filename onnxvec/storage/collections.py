"""Collections: their rows (model, dims, metric, chunking, hidden metadata, text search language) and
each one's own HNSW index.

Every collection's vectors live in the shared ``chunks`` table (untyped ``vector`` column). Each
collection gets a partial HNSW index on ``embedding::vector(<dims>)`` with the opclass of its metric,
restricted to ``collection_id = <id>``; searches (onnxvec/storage/chunks.py) repeat that exact
expression and predicate so the planner uses the collection's own index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from onnxvec.config import default
from onnxvec.errors import CollectionNotFound, StoreError
from onnxvec.values import unstorable

Metric = Literal["cosine", "l2", "ip"]


OPCLASS: dict[str, str] = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}


MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 8, 8192  # a chunk longer than its model's input is cut to it when embedded
MAX_NAME = 200  # characters of a collection name (a unique btree key must stay far under 2,704 bytes)


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
    language: str = "english"  # the text search configuration its chunks and full-text queries are stemmed with

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_metadata", tuple(self.hidden_metadata))  # a text[] reads as a list

    @property
    def index_name(self) -> str:
        return f"chunks_hnsw_{self.id}"

    @property
    def vector_expr(self) -> str:
        return f"(embedding::vector({int(self.dims)}))"


_COLLECTION_COLUMNS = (
    "id, name, model, dims, metric, hnsw_m, hnsw_ef_construction, chunk_tokens, chunk_overlap, hidden_metadata,"
    " language"
)


def create_collection(
    conn: Connection,
    name: str,
    model: str,
    dims: int,
    metric: Metric = "cosine",
    *,
    hnsw_m: int = default("hnsw_m"),
    hnsw_ef_construction: int = default("hnsw_ef_construction"),
    chunk_tokens: int = default("chunk_tokens"),
    chunk_overlap: int = default("chunk_overlap"),
    hidden_metadata: Iterable[str] = (),
    language: str = default("language"),
) -> Collection:
    """Insert a collection and build its (empty, so instant) HNSW index in the same transaction."""
    hidden = _metadata_paths(hidden_metadata)
    _check_language(conn, language)
    if metric not in OPCLASS:
        raise StoreError(f"metric must be one of {sorted(OPCLASS)}, not {metric!r}", "metric")
    if not MIN_CHUNK_TOKENS <= chunk_tokens <= MAX_CHUNK_TOKENS or not 0 <= chunk_overlap < chunk_tokens:
        raise StoreError(
            f"chunks are {MIN_CHUNK_TOKENS} to {MAX_CHUNK_TOKENS} tokens with an overlap below their size,"
            f" not {chunk_tokens} with {chunk_overlap}",
            "chunk_tokens" if not MIN_CHUNK_TOKENS <= chunk_tokens <= MAX_CHUNK_TOKENS else "chunk_overlap",
        )
    if not name or len(name) > MAX_NAME or unstorable(name):
        raise StoreError(f"a collection name is 1 to {MAX_NAME} characters of valid text, not {name[:40]!r}", "name")
    row = conn.execute(
        text(
            f"INSERT INTO collections (name, model, dims, metric, hnsw_m, hnsw_ef_construction, chunk_tokens,"
            f" chunk_overlap, hidden_metadata, language)"
            f" VALUES (:name, :model, :dims, :metric, :m, :ef, :ct, :co, :hidden, :language)"
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
            "language": language,
        },
    ).one_or_none()
    if row is None:
        raise StoreError(f"collection {name!r} already exists", "name")  # no 409 in onnxvec/errors.py
    collection = Collection(*row)
    create_index(conn, collection)
    return collection


def _check_language(conn: Connection, language: str) -> None:
    """A name Postgres does not know as a text search configuration would fail every chunk written."""
    known = (
        not unstorable(language)
        and conn.execute(text("SELECT 1 FROM pg_ts_config WHERE cfgname = :language"), {"language": language}).first()
    )
    if not known:
        raise StoreError(
            f"no text search configuration {language[:40]!r} (see SELECT cfgname FROM pg_ts_config)", "language"
        )


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
    """Delete a collection, its documents and chunks, and its index. A collection a table source
    feeds is refused (the database keeps the source's triggers pointing at it): remove the source first."""
    collection = get_collection(conn, name)
    try:
        with conn.begin_nested():
            conn.execute(text("DELETE FROM collections WHERE id = :id"), {"id": collection.id})
    except IntegrityError as exc:
        raise StoreError(f"a table source feeds {name!r}: remove it first (onnxvec sources rm NAME)") from exc
    drop_index(conn, collection)
