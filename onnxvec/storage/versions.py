"""All SQL for embedding versions: a collection's model, dims, metric, chunking and HNSW settings, one
row per version, each with its own partial HNSW index on the chunks of that version.

A collection's `active_version_id` says which version search and chat read. A new version is built
in the background (state building, or paused) while every ingest writes to every version the
collection has, so a version that finishes building, or an older one switched back to, holds every
document as it is now. The switch is one UPDATE of the pointer; writers take the collection's row
FOR SHARE, the switch FOR UPDATE, so a write never lands half on each side of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from onnxvec.errors import VersionNotFound

OPCLASS: dict[str, str] = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}

# a version's settings, in the order Collection and Version carry them
SETTINGS = "model, dims, metric, hnsw_m, hnsw_ef_construction, chunk_tokens, chunk_overlap"


@dataclass(frozen=True)
class Version:
    """A version as `collections versions` lists it: its settings and how far its build is."""

    id: int
    collection_id: int
    version: int
    model: str
    dims: int
    metric: str
    chunk_tokens: int
    chunk_overlap: int
    state: str  # building | paused | ready
    active: bool
    built_through: int  # the build's cursor: documents up to this id are in
    built_documents: int
    embedded_chunks: int
    reused_chunks: int
    created_at: datetime
    built_at: datetime | None
    error: str | None  # why the build paused itself
    chunks: int
    documents: int  # the collection's documents done in the active version: what a build has to cover

    @property
    def progress(self) -> float:
        return 1.0 if self.state == "ready" else min(1.0, self.built_documents / max(1, self.documents))

    def eta_seconds(self, now: datetime) -> float | None:
        """From the pace so far; None before the first batch or once built."""
        if self.state == "ready" or not self.built_documents:
            return None
        elapsed = (now - self.created_at).total_seconds()
        return max(0.0, self.documents - self.built_documents) * elapsed / self.built_documents


def insert(
    conn: Connection, collection_id: int, settings: dict, *, state: str, activate_when_built: bool = True
) -> int:
    """A new version (the next number of its collection) and its empty, so instant, HNSW index; its id."""
    version_id = conn.execute(
        text(
            f"INSERT INTO embedding_versions (collection_id, version, {SETTINGS}, state, activate_when_built, built_at)"
            " SELECT :cid, coalesce(max(version), 0) + 1, :model, :dims, :metric, :hnsw_m, :hnsw_ef_construction,"
            " :chunk_tokens, :chunk_overlap, :state, :activate, CASE WHEN :state = 'ready' THEN now() END"
            " FROM embedding_versions WHERE collection_id = :cid RETURNING id"
        ),
        settings | {"cid": collection_id, "state": state, "activate": activate_when_built},
    ).scalar_one()
    create_index(conn, version_id, settings)
    return version_id


def index_name(version_id: int) -> str:
    return f"chunks_hnsw_v{int(version_id)}"


def create_index(conn: Connection, version_id: int, settings: dict) -> None:
    """The version's own HNSW index: its vectors only, typed to its dims, with its metric's opclass."""
    conn.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {index_name(version_id)} ON chunks USING hnsw"
            f" ((embedding::vector({int(settings['dims'])})) {OPCLASS[settings['metric']]})"
            f" WITH (m = {int(settings['hnsw_m'])}, ef_construction = {int(settings['hnsw_ef_construction'])})"
            f" WHERE version_id = {int(version_id)}"
        )
    )


def lock_collection(conn: Connection, collection_id: int, *, exclusive: bool = False) -> list[int]:
    """Lock the collection's row (FOR SHARE to write chunks, FOR UPDATE to switch or remove versions)
    until the transaction ends; the ids of its versions now, every one a write must go to."""
    mode = "UPDATE" if exclusive else "SHARE"
    conn.execute(text(f"SELECT 1 FROM collections WHERE id = :c FOR {mode}"), {"c": collection_id})
    return list(
        conn.execute(
            text("SELECT id FROM embedding_versions WHERE collection_id = :c ORDER BY id"), {"c": collection_id}
        ).scalars()
    )


def list_versions(conn: Connection, collection_id: int) -> list[Version]:
    rows = conn.execute(
        text(
            "SELECT v.id, v.collection_id, v.version, v.model, v.dims, v.metric, v.chunk_tokens, v.chunk_overlap,"
            " v.state, v.id = c.active_version_id, v.built_through, v.built_documents, v.embedded_chunks,"
            " v.reused_chunks, v.created_at, v.built_at, v.last_error,"
            " (SELECT count(*) FROM chunks ch WHERE ch.version_id = v.id),"
            " (SELECT count(*) FROM documents d WHERE d.collection_id = c.id AND d.state = 'done')"
            " FROM embedding_versions v JOIN collections c ON c.id = v.collection_id"
            " WHERE v.collection_id = :c ORDER BY v.version"
        ),
        {"c": collection_id},
    )
    return [Version(*row) for row in rows]


def get_version(conn: Connection, collection_id: int, number: int) -> Version:
    for version in list_versions(conn, collection_id):
        if version.version == number:
            return version
    raise VersionNotFound(f"the collection has no version {number}")


def building(conn: Connection, idle_seconds: float) -> list[tuple[int, int]]:
    """(version id, cursor) of versions still building whose build has made no progress for
    `idle_seconds`: the reconciler sends them out again (a killed worker, a flushed queue)."""
    rows = conn.execute(
        text(
            "SELECT id, built_through FROM embedding_versions WHERE state = 'building'"
            " AND progress_at < now() - make_interval(secs => :idle) ORDER BY id"
        ),
        {"idle": idle_seconds},
    )
    return [(version_id, cursor) for version_id, cursor in rows]


@dataclass(frozen=True)
class Pending:
    """Documents of a building version's next batch, past its cursor."""

    state: str
    collection_id: int
    cursor: int  # the last document id built
    documents: list[tuple[int, str, str]]  # (id, content, content hash)


def next_batch(conn: Connection, version_id: int, size: int) -> Pending | None:
    """The next `size` done documents past the version's cursor, in id order; None if it is gone."""
    row = conn.execute(
        text("SELECT state, collection_id, built_through FROM embedding_versions WHERE id = :v"), {"v": version_id}
    ).one_or_none()
    if row is None:
        return None
    state, collection_id, cursor = row
    docs = conn.execute(
        text(
            "SELECT id, content, content_hash FROM documents WHERE collection_id = :c AND id > :cursor"
            " AND state = 'done' AND content IS NOT NULL ORDER BY id LIMIT :n"
        ),
        {"c": collection_id, "cursor": cursor, "n": size},
    ).all()
    return Pending(state, collection_id, cursor, [tuple(doc) for doc in docs])


def current(conn: Connection, hashes: dict[int, str]) -> list[int]:
    """Of these documents, those still done with the content that was embedded; locked until commit so
    that no change lands between this check and the write."""
    rows = conn.execute(
        text("SELECT id, content_hash FROM documents WHERE id = ANY(:ids) AND state = 'done' ORDER BY id FOR SHARE"),
        {"ids": list(hashes)},
    ).all()
    return [doc_id for doc_id, digest in rows if hashes[doc_id] == digest]


def advance(conn: Connection, version_id: int, through: int, documents: int, embedded: int, reused: int) -> None:
    """Move a build's cursor past a batch written in the same transaction, and count it."""
    conn.execute(
        text(
            "UPDATE embedding_versions SET built_through = greatest(built_through, :through),"
            " built_documents = built_documents + :docs, embedded_chunks = embedded_chunks + :emb,"
            " reused_chunks = reused_chunks + :reused, progress_at = now() WHERE id = :v"
        ),
        {"v": version_id, "through": through, "docs": documents, "emb": embedded, "reused": reused},
    )


def finish_build(conn: Connection, version_id: int) -> bool:
    """Mark a version whose cursor passed every document ready, and make it active if it was started
    so; under the collection's lock, so no write falls between the last check and the switch. False
    if documents remain (they came after the last batch was read)."""
    collection_id = conn.execute(
        text("SELECT collection_id FROM embedding_versions WHERE id = :v"), {"v": version_id}
    ).scalar_one()
    lock_collection(conn, collection_id, exclusive=True)
    pending = next_batch(conn, version_id, 1)
    if pending is None or pending.documents or pending.state != "building":
        return False
    activate = conn.execute(
        text(
            "UPDATE embedding_versions SET state = 'ready', built_at = now(), progress_at = now() WHERE id = :v"
            " RETURNING activate_when_built"
        ),
        {"v": version_id},
    ).scalar_one()
    if activate:
        set_active(conn, collection_id, version_id)
    return True


def set_active(conn: Connection, collection_id: int, version_id: int) -> None:
    """Point the collection at a version: one row, so every search sees the old one or the new one."""
    conn.execute(
        text("UPDATE collections SET active_version_id = :v WHERE id = :c"), {"v": version_id, "c": collection_id}
    )


def set_state(conn: Connection, version_id: int, state: str, error: str | None = None) -> None:
    """Pause or resume a build, with the reason when it pauses itself (cleared otherwise)."""
    conn.execute(
        text("UPDATE embedding_versions SET state = :s, last_error = :e, progress_at = now() WHERE id = :v"),
        {"v": version_id, "s": state, "e": error},
    )


def remove(conn: Connection, version_ids: Sequence[int]) -> None:
    """Delete versions (their chunks go with them) and drop their indexes."""
    conn.execute(text("DELETE FROM embedding_versions WHERE id = ANY(:ids)"), {"ids": list(version_ids)})
    for version_id in version_ids:
        conn.execute(text(f"DROP INDEX IF EXISTS {index_name(version_id)}"))
