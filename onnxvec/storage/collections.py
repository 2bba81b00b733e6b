"""Collections: their rows (name, hidden metadata, text search language), read together with an
embedding version (model, dims, metric, chunking: onnxvec/storage/versions.py), the active one unless
another is asked for.

Every collection's vectors live in the shared ``chunks`` table (untyped ``vector`` column). Each
version gets a partial HNSW index on ``embedding::vector(<dims>)`` with the opclass of its metric,
restricted to ``version_id = <id>``; searches (onnxvec/storage/chunks.py) repeat that exact
expression and predicate so the planner uses the version's own index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from onnxvec.config import default
from onnxvec.errors import CollectionNotFound, StoreError
from onnxvec.storage import versions
from onnxvec.storage.versions import OPCLASS
from onnxvec.values import unstorable

Metric = Literal["cosine", "l2", "ip"]


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
    version: int = 1  # the embedding version the model, dims, metric and chunking above are of
    version_id: int = 0  # that version's row: its chunks carry it

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_metadata", tuple(self.hidden_metadata))  # a text[] reads as a list

    @property
    def index_name(self) -> str:
        return versions.index_name(self.version_id)

    @property
    def settings(self) -> dict:
        """The version's settings, as versions.insert takes them."""
        return {name: getattr(self, name) for name in versions.SETTINGS.split(", ")}

    @property
    def vector_expr(self) -> str:
        return f"(embedding::vector({int(self.dims)}))"


_COLLECTION_COLUMNS = (
    "c.id, c.name, v.model, v.dims, v.metric, v.hnsw_m, v.hnsw_ef_construction, v.chunk_tokens, v.chunk_overlap,"
    " c.hidden_metadata, c.language, v.version, v.id"
)
_ACTIVE = f"SELECT {_COLLECTION_COLUMNS} FROM collections c JOIN embedding_versions v ON v.id = c.active_version_id"


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
    settings = {
        "model": model,
        "dims": dims,
        "metric": metric,
        "hnsw_m": hnsw_m,
        "hnsw_ef_construction": hnsw_ef_construction,
        "chunk_tokens": chunk_tokens,
        "chunk_overlap": chunk_overlap,
    }
    check_settings(settings)
    if not name or len(name) > MAX_NAME or unstorable(name):
        raise StoreError(f"a collection name is 1 to {MAX_NAME} characters of valid text, not {name[:40]!r}", "name")
    collection_id = conn.execute(
        text(
            "INSERT INTO collections (name, hidden_metadata, language) VALUES (:name, :hidden, :language)"
            " ON CONFLICT (name) DO NOTHING RETURNING id"
        ),
        {"name": name, "hidden": hidden, "language": language},
    ).scalar_one_or_none()
    if collection_id is None:
        raise StoreError(f"collection {name!r} already exists", "name")  # no 409 in onnxvec/errors.py
    versions.set_active(conn, collection_id, versions.insert(conn, collection_id, settings, state="ready"))
    return get_collection_by_id(conn, collection_id)


def check_settings(settings: dict) -> None:
    """A metric pgvector indexes, and chunks of a size a model can take with an overlap below it."""
    if settings["metric"] not in OPCLASS:
        raise StoreError(f"metric must be one of {sorted(OPCLASS)}, not {settings['metric']!r}", "metric")
    tokens, overlap = settings["chunk_tokens"], settings["chunk_overlap"]
    if not MIN_CHUNK_TOKENS <= tokens <= MAX_CHUNK_TOKENS or not 0 <= overlap < tokens:
        raise StoreError(
            f"chunks are {MIN_CHUNK_TOKENS} to {MAX_CHUNK_TOKENS} tokens with an overlap below their size,"
            f" not {tokens} with {overlap}",
            "chunk_tokens" if not MIN_CHUNK_TOKENS <= tokens <= MAX_CHUNK_TOKENS else "chunk_overlap",
        )


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
    """The version's own HNSW index (after a bulk load that dropped it)."""
    versions.create_index(conn, collection.version_id, collection.settings)


def drop_index(conn: Connection, collection: Collection) -> None:
    """To build the index after a bulk load."""
    conn.execute(text(f"DROP INDEX IF EXISTS {collection.index_name}"))


def get_collection(conn: Connection, name: str) -> Collection:
    return _one_collection(conn, "c.name = :key", name, f"collection {name!r} does not exist")


def get_collection_by_id(conn: Connection, collection_id: int) -> Collection:
    return _one_collection(conn, "c.id = :key", collection_id, f"collection {collection_id} does not exist")


def every_version(conn: Connection, collection_id: int) -> list[Collection]:
    """The collection at each of its versions, oldest first: what an ingest writes to."""
    rows = conn.execute(
        text(
            f"SELECT {_COLLECTION_COLUMNS} FROM collections c JOIN embedding_versions v ON v.collection_id = c.id"
            " WHERE c.id = :c ORDER BY v.id"
        ),
        {"c": collection_id},
    )
    return [Collection(*row) for row in rows]


def at_version(conn: Connection, version_id: int) -> Collection | None:
    """The collection at one version (a build's target); None when the version is gone."""
    row = conn.execute(
        text(
            f"SELECT {_COLLECTION_COLUMNS} FROM collections c JOIN embedding_versions v ON v.collection_id = c.id"
            " WHERE v.id = :v"
        ),
        {"v": version_id},
    ).one_or_none()
    return None if row is None else Collection(*row)


def _one_collection(conn: Connection, where: str, key: object, missing: str) -> Collection:
    if isinstance(key, str) and unstorable(key):  # no collection can have such a name
        raise CollectionNotFound(missing)
    row = conn.execute(text(f"{_ACTIVE} WHERE {where}"), {"key": key}).one_or_none()
    if row is None:
        raise CollectionNotFound(missing)
    return Collection(*row)


def list_collections(conn: Connection) -> list[Collection]:
    rows = conn.execute(text(f"{_ACTIVE} ORDER BY c.name"))
    return [Collection(*row) for row in rows]


def hide_metadata(conn: Connection, name: str, paths: Iterable[str]) -> Collection:
    """Replace the collection's hidden metadata paths (none: everything is shown again)."""
    collection = get_collection(conn, name)
    conn.execute(
        text("UPDATE collections SET hidden_metadata = :paths WHERE id = :id"),
        {"paths": _metadata_paths(paths), "id": collection.id},
    )
    return get_collection_by_id(conn, collection.id)


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
    indexed = versions.lock_collection(conn, collection.id, exclusive=True)
    try:
        with conn.begin_nested():
            conn.execute(text("UPDATE collections SET active_version_id = NULL WHERE id = :id"), {"id": collection.id})
            conn.execute(text("DELETE FROM collections WHERE id = :id"), {"id": collection.id})
    except IntegrityError as exc:
        raise StoreError(f"a table source feeds {name!r}: remove it first (onnxvec sources rm NAME)") from exc
    for version_id in indexed:
        conn.execute(text(f"DROP INDEX IF EXISTS {versions.index_name(version_id)}"))
