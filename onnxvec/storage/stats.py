"""What the documents and chunks tables say about progress: counts by state, live claims, failures,
per-collection totals (for `onnxvec status`, waiting ingests, the collection list and /metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from onnxvec.storage.collections import Collection


def counts(conn: Connection, collection: Collection | None = None, ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Documents and their text bytes by state (bytes follow tokens, so a progress ETA holds where
    documents range from 3 to 150 chunks), chunks, and documents finished in the last minute."""
    where, params = "TRUE", {}
    if collection is not None:
        where, params = "collection_id = :cid", {"cid": collection.id}
    if ids is not None:
        where, params = where + " AND id = ANY(:ids)", params | {"ids": list(ids)}
    rows = conn.execute(
        text(f"SELECT state, count(*), sum(octet_length(content)) FROM documents WHERE {where} GROUP BY state"),
        params,
    ).all()
    by_state = {state: count for state, count, _ in rows}
    text_bytes = {state: int(size or 0) for state, _, size in rows}
    recent = conn.execute(
        text(
            f"SELECT count(*) FROM documents WHERE {where} AND state = 'done' AND updated_at > now() - interval '60 s'"
        ),
        params,
    ).scalar_one()
    chunk_where = "TRUE" if collection is None else "ch.collection_id = :cid"
    chunks = conn.execute(
        text(
            "SELECT count(*) FROM chunks ch JOIN collections c ON c.active_version_id = ch.version_id"
            f" WHERE {chunk_where}"
        ),
        params,
    ).scalar_one()
    states = {state: int(by_state.get(state, 0)) for state in ("pending", "processing", "done", "failed")}
    return {
        "documents": states,
        "text_bytes": {state: text_bytes.get(state, 0) for state in states},
        "total": sum(states.values()),
        "chunks": int(chunks),
        "done_last_minute": int(recent),
    }


def claims(conn: Connection) -> dict[str, float]:
    """Live and lapsed claims, and how long the oldest pending document has waited: what tells a stall."""
    live, lapsed, waited = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE state = 'processing' AND lease_until >= now()),"
            " count(*) FILTER (WHERE state = 'processing' AND lease_until < now()),"
            " coalesce(extract(epoch FROM now() - min(updated_at) FILTER (WHERE state = 'pending')), 0)"
            " FROM documents"
        )
    ).one()
    return {"live_claims": int(live), "lapsed_claims": int(lapsed), "oldest_pending_seconds": round(float(waited), 1)}


def failures(conn: Connection, collection: Collection | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    where = "d.state = 'failed'" + (f" AND d.collection_id = {int(collection.id)}" if collection else "")
    rows = conn.execute(
        text(
            "SELECT d.id, c.name, d.external_id, d.attempts, d.last_error, d.updated_at FROM documents d"
            f" JOIN collections c ON c.id = d.collection_id WHERE {where} ORDER BY d.id LIMIT :limit"
        ),
        {"limit": limit},
    )
    keys = ("id", "collection", "external_id", "attempts", "error", "updated_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def counts_by_collection(conn: Connection) -> list[tuple[str, str, int]]:
    """(collection, state, documents) for every collection: what the metrics endpoint reports."""
    rows = conn.execute(
        text(
            "SELECT c.name, d.state, count(*) FROM documents d JOIN collections c ON c.id = d.collection_id"
            " GROUP BY c.name, d.state ORDER BY c.name, d.state"
        )
    )
    return [(name, state, int(count)) for name, state, count in rows]


def chunks_by_collection(conn: Connection) -> list[tuple[str, int]]:
    rows = conn.execute(
        text(
            "SELECT c.name, count(ch.id) FROM collections c LEFT JOIN chunks ch ON ch.version_id = c.active_version_id"
            " GROUP BY c.name ORDER BY c.name"
        )
    )
    return [(name, int(count)) for name, count in rows]


def counts_with_prefix(conn: Connection, collection: Collection, prefix: str) -> dict[str, int]:
    """Documents by state among those whose ids start with `prefix` (a table source's: "NAME:")."""
    rows = conn.execute(
        text(
            "SELECT state, count(*) FROM documents WHERE collection_id = :cid AND starts_with(external_id, :p)"
            " GROUP BY state"
        ),
        {"cid": collection.id, "p": prefix},
    ).all()
    found = dict(rows)
    return {state: int(found.get(state, 0)) for state in ("pending", "processing", "done", "failed")}


def finished_recently(conn: Connection, collection: Collection, prefix: str, seconds: float) -> int:
    """Documents among those whose ids start with `prefix` that became done or failed (or whose metadata
    was brought up to date) in the last `seconds`: a table source's recent rows."""
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM documents WHERE collection_id = :cid AND starts_with(external_id, :p)"
                " AND state IN ('done', 'failed') AND updated_at > now() - make_interval(secs => :s)"
            ),
            {"cid": collection.id, "p": prefix, "s": seconds},
        ).scalar_one()
    )
