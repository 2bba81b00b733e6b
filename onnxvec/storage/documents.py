"""All SQL for documents and their life cycle: register, claim with a lease, finish, fail, report.

States: pending -> processing (claimed, with a lease) -> done | failed. Postgres is the only record
of this; queue messages carry ids and nothing else, so any message may be lost or delivered twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from onnxvec.sources.files import SourceDocument
from onnxvec.storage.chunks import ChunkRow, replace_chunks
from onnxvec.storage.collections import Collection
from onnxvec.values import unstorable

REGISTER_BATCH = 1000


@dataclass(frozen=True)
class Registered:
    queued: list[int]  # new or changed documents, now pending
    failed: int  # new or changed documents that could not be loaded, recorded as failed
    unchanged: int


@dataclass(frozen=True)
class Claimed:
    id: int
    collection_id: int
    content: str | None
    content_hash: str | None
    last_error: str | None


def register(conn: Connection, collection: Collection, docs: Sequence[SourceDocument]) -> Registered:
    """Insert or update documents in bulk. A document whose content hash is unchanged is not embedded
    again; only its metadata is brought up to date."""
    queued: list[int] = []
    failed = 0
    for start in range(0, len(docs), REGISTER_BATCH):
        part = docs[start : start + REGISTER_BATCH]
        params = {
            "cid": collection.id,
            "eids": [d.external_id for d in part],
            "sources": [d.source for d in part],
            "hashes": [d.content_hash for d in part],
            "metas": [json.dumps(d.metadata, default=str) for d in part],
            "contents": [None if d.error else d.text for d in part],
            "errors": [d.error for d in part],
        }
        conn.execute(
            text(
                "UPDATE documents d SET metadata = t.metadata, source = t.source, updated_at = now()"
                " FROM unnest(CAST(:eids AS text[]), CAST(:sources AS text[]), CAST(:hashes AS text[]),"
                " CAST(:metas AS jsonb[])) AS t(external_id, source, content_hash, metadata)"
                " WHERE d.collection_id = :cid AND d.external_id = t.external_id"
                " AND d.content_hash = t.content_hash AND d.metadata IS DISTINCT FROM t.metadata"
            ),
            params,
        )
        rows = conn.execute(
            text(
                "INSERT INTO documents (collection_id, external_id, source, content_hash, metadata, content,"
                " state, last_error)"
                " SELECT :cid, t.external_id, t.source, t.content_hash, t.metadata, t.content,"
                " CASE WHEN t.error IS NULL THEN 'pending' ELSE 'failed' END, t.error"
                " FROM unnest(CAST(:eids AS text[]), CAST(:sources AS text[]), CAST(:hashes AS text[]),"
                " CAST(:metas AS jsonb[]), CAST(:contents AS text[]), CAST(:errors AS text[]))"
                " AS t(external_id, source, content_hash, metadata, content, error)"
                " ON CONFLICT (collection_id, external_id) DO UPDATE SET source = EXCLUDED.source,"
                " content_hash = EXCLUDED.content_hash, metadata = EXCLUDED.metadata, content = EXCLUDED.content,"
                " state = EXCLUDED.state, last_error = EXCLUDED.last_error, attempts = 0, lease_owner = NULL,"
                " lease_until = NULL, enqueued_at = NULL, updated_at = now()"
                " WHERE documents.content_hash IS DISTINCT FROM EXCLUDED.content_hash"
                " RETURNING id, state"
            ),
            params,
        ).all()
        queued += [doc_id for doc_id, state in rows if state == "pending"]
        failed += sum(state == "failed" for _, state in rows)
    return Registered(queued, failed, len(docs) - len(queued) - failed)


def put_done(conn: Connection, collection: Collection, docs: Sequence[SourceDocument]) -> dict[str, tuple[int, bool]]:
    """Insert or update documents that arrive with their vectors (an import), as done: nothing is queued.
    Returns the new and changed ones by external id, as (document id, new?); a document whose content
    hash, metadata and state are as given is left alone and not returned. The caller writes the chunks."""
    rows = conn.execute(
        text(
            "INSERT INTO documents (collection_id, external_id, source, content_hash, metadata, content, state)"
            " SELECT :cid, t.external_id, t.source, t.content_hash, t.metadata, t.content, 'done'"
            " FROM unnest(CAST(:eids AS text[]), CAST(:sources AS text[]), CAST(:hashes AS text[]),"
            " CAST(:metas AS jsonb[]), CAST(:contents AS text[]))"
            " AS t(external_id, source, content_hash, metadata, content)"
            " ON CONFLICT (collection_id, external_id) DO UPDATE SET source = EXCLUDED.source,"
            " content_hash = EXCLUDED.content_hash, metadata = EXCLUDED.metadata, content = EXCLUDED.content,"
            " state = 'done', last_error = NULL, attempts = 0, lease_owner = NULL, lease_until = NULL,"
            " enqueued_at = NULL, updated_at = now()"
            " WHERE documents.content_hash IS DISTINCT FROM EXCLUDED.content_hash"
            " OR documents.metadata IS DISTINCT FROM EXCLUDED.metadata OR documents.state <> 'done'"
            " RETURNING external_id, id, xmax = 0"
        ),
        {
            "cid": collection.id,
            "eids": [d.external_id for d in docs],
            "sources": [d.source for d in docs],
            "hashes": [d.content_hash for d in docs],
            "metas": [json.dumps(d.metadata, default=str) for d in docs],
            "contents": [d.text for d in docs],
        },
    ).all()
    conn.execute(
        text("DELETE FROM chunks WHERE version_id = :v AND document_id = ANY(:ids)"),
        {"v": collection.version_id, "ids": [doc_id for _, doc_id, _ in rows]},
    )
    return {eid: (doc_id, new) for eid, doc_id, new in rows}


@dataclass(frozen=True)
class Described:
    external_id: str
    source: str | None
    state: str
    error: str | None
    attempts: int
    metadata: dict
    chunks: int
    updated_at: datetime


def describe(conn: Connection, collection: Collection, external_id: str) -> Described | None:
    """One document's state, last error, metadata and chunk count (what GET of a document answers)."""
    if unstorable(external_id):  # no document can have such an id
        return None
    row = conn.execute(
        text(
            "SELECT d.external_id, d.source, d.state, d.last_error, d.attempts, d.metadata,"
            " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id AND c.version_id = :v), d.updated_at"
            " FROM documents d WHERE d.collection_id = :cid AND d.external_id = :eid"
        ),
        {"cid": collection.id, "v": collection.version_id, "eid": external_id},
    ).one_or_none()
    return None if row is None else Described(*row)


def mark_enqueued(conn: Connection, ids: Sequence[int], *, enqueued: bool = True) -> None:
    """Record that ids were sent to the queue now (or, `enqueued=False`, that sending them failed)."""
    conn.execute(
        text("UPDATE documents SET enqueued_at = CASE WHEN :on THEN now() END WHERE id = ANY(:ids)"),
        {"ids": list(ids), "on": enqueued},
    )


def claim(conn: Connection, ids: Sequence[int], owner: str, lease_seconds: float) -> list[Claimed]:
    """Take the pending (or lease-expired) documents among `ids`; rows another worker holds are skipped.
    The owner's own live claims are taken again: a task retried after the database came back finds the
    claims its failed attempt could not release."""
    rows = conn.execute(
        text(
            "UPDATE documents d SET state = 'processing', lease_owner = :owner, attempts = d.attempts + 1,"
            " lease_until = now() + make_interval(secs => :lease), updated_at = now()"
            " FROM (SELECT id FROM documents WHERE id = ANY(:ids) AND (state = 'pending'"
            " OR (state = 'processing' AND (lease_until < now() OR lease_owner = :owner)))"
            " ORDER BY id FOR UPDATE SKIP LOCKED) c"
            " WHERE d.id = c.id RETURNING d.id, d.collection_id, d.content, d.content_hash, d.last_error"
        ),
        {"ids": list(ids), "owner": owner, "lease": lease_seconds},
    )
    return [Claimed(*row) for row in rows]


def renew(conn: Connection, owner: str, ids: Sequence[int], lease_seconds: float) -> int:
    """Extend the owner's live claims (the worker's heartbeat): a busy worker keeps them however long
    its batch takes, while a dead one's lapse within one lease."""
    return conn.execute(
        text(
            "UPDATE documents SET lease_until = now() + make_interval(secs => :lease)"
            " WHERE id = ANY(:ids) AND lease_owner = :owner AND state = 'processing'"
        ),
        {"ids": list(ids), "owner": owner, "lease": lease_seconds},
    ).rowcount


def finish(
    conn: Connection,
    owner: str,
    hashes: dict[int, str],
    writes: Sequence[tuple[Collection, dict[int, list[ChunkRow]]]],
) -> list[int]:
    """Replace each document's chunks in every version written to and mark it done, in the caller's
    one transaction.

    Only documents still leased to `owner` with the content that was embedded (`hashes`) are written:
    a worker whose lease ran out, or whose document changed meanwhile, writes nothing for it.
    """
    held = conn.execute(
        text(
            "SELECT id, content_hash FROM documents WHERE id = ANY(:ids) AND lease_owner = :owner"
            " AND state = 'processing' ORDER BY id FOR UPDATE"
        ),
        {"ids": list(hashes), "owner": owner},
    ).all()
    kept = [doc_id for doc_id, digest in held if hashes[doc_id] == digest]
    if not kept:
        return []
    for collection, rows in writes:
        replace_chunks(conn, collection, {doc_id: rows[doc_id] for doc_id in kept})
    conn.execute(
        text(
            "UPDATE documents SET state = 'done', lease_owner = NULL, lease_until = NULL, last_error = NULL,"
            " updated_at = now() WHERE id = ANY(:ids)"
        ),
        {"ids": kept},
    )
    return kept


def fail(conn: Connection, owner: str, doc_id: int, error: str) -> None:
    """Record a permanent error: the document is failed until `retry`."""
    conn.execute(
        text(
            "UPDATE documents SET state = 'failed', last_error = :error, lease_owner = NULL, lease_until = NULL,"
            " updated_at = now() WHERE id = :id AND lease_owner = :owner"
        ),
        {"id": doc_id, "owner": owner, "error": error[:2000]},
    )


def release(conn: Connection, owner: str, ids: Sequence[int], error: str) -> None:
    """Give claimed documents back as pending after a transient error, noting it."""
    conn.execute(
        text(
            "UPDATE documents SET state = 'pending', last_error = :error, lease_owner = NULL, lease_until = NULL,"
            " updated_at = now() WHERE id = ANY(:ids) AND lease_owner = :owner"
        ),
        {"ids": list(ids), "owner": owner, "error": error[:2000]},
    )


def stale(conn: Connection, requeue_after: float, limit: int = 10_000) -> list[int]:
    """Documents the queue may have lost: pending and not enqueued for `requeue_after` seconds, or
    processing past their lease. With the broker's queue empty, the caller passes a short
    `requeue_after`: pending work that no message carries any more (Redis flushed) goes out again at
    once; a duplicate of a message a worker still holds is harmless (claims skip it)."""
    return list(
        conn.execute(
            text(
                "SELECT id FROM documents WHERE (state = 'pending' AND (enqueued_at IS NULL"
                " OR enqueued_at < now() - make_interval(secs => :after)))"
                " OR (state = 'processing' AND lease_until < now()) ORDER BY id LIMIT :limit"
            ),
            {"after": requeue_after, "limit": limit},
        ).scalars()
    )


def give_up(conn: Connection, max_attempts: int) -> int:
    """Fail documents whose lease expired after their last allowed attempt (e.g. a crash each time)."""
    return conn.execute(
        text(
            "UPDATE documents SET state = 'failed', lease_owner = NULL, lease_until = NULL, updated_at = now(),"
            " last_error = 'gave up after ' || attempts || ' attempts; last error: ' || coalesce(last_error, 'none')"
            " WHERE state = 'processing' AND lease_until < now() AND attempts >= :max"
        ),
        {"max": max_attempts},
    ).rowcount


def retry(conn: Connection, collection: Collection | None) -> list[int]:
    """Failed documents back to pending (with a fresh attempt count); returns their ids."""
    where = "state = 'failed'" + (f" AND collection_id = {int(collection.id)}" if collection else "")
    return list(
        conn.execute(
            text(
                f"UPDATE documents SET state = 'pending', attempts = 0, enqueued_at = NULL, updated_at = now()"
                f" WHERE {where} RETURNING id"
            )
        ).scalars()
    )


def remove(conn: Connection, collection: Collection, external_ids: Sequence[str]) -> int:
    """Delete documents (their chunks go with them) by external id; returns how many were there."""
    return conn.execute(
        text("DELETE FROM documents WHERE collection_id = :cid AND external_id = ANY(:eids)"),
        {"cid": collection.id, "eids": [eid for eid in external_ids if not unstorable(eid)]},  # none has such an id
    ).rowcount


def ids_with_prefix(conn: Connection, collection: Collection, prefix: str) -> list[str]:
    """External ids that start with `prefix` (a table source's documents: "NAME:")."""
    return list(
        conn.execute(
            text("SELECT external_id FROM documents WHERE collection_id = :cid AND starts_with(external_id, :p)"),
            {"cid": collection.id, "p": prefix},
        ).scalars()
    )


def prune(conn: Connection, collection: Collection, roots: Sequence[str], seen: Sequence[str]) -> int:
    """Delete documents from files under `roots` (file URIs) that this ingest did not see any more."""
    return conn.execute(
        text(
            "DELETE FROM documents WHERE collection_id = :cid"
            " AND EXISTS (SELECT 1 FROM unnest(CAST(:roots AS text[])) r WHERE starts_with(source, r))"
            " AND NOT (external_id = ANY(:seen))"
        ),
        {"cid": collection.id, "roots": list(roots), "seen": list(seen)},
    ).rowcount
