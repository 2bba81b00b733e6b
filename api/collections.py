"""/v1/collections: create, list, read and delete collections; post, read and delete their documents.

Each route goes through the path the command line takes (`new_collection`, `register_documents`,
`drop_collection`, `documents.remove`), in a thread so the event loop keeps serving. A key scoped to
collections reaches only those (any other is a 404, api/auth.py `reachable`) and creates only those
its grant names (403); a read-only key is refused every writing route before it gets here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import Engine

from api.auth import reachable
from api.collection_schemas import (
    CollectionRequest,
    Deleted,
    Document,
    DocumentIn,
    DocumentsAccepted,
    DocumentsRequest,
)
from api.errors import APIError
from api.routes import JSON
from api.schemas import Collection as CollectionObject
from api.schemas import CollectionList, error_responses
from onnxvec.config import Settings
from onnxvec.errors import DocumentNotFound, InvalidRequest
from onnxvec.ingest.register import IngestReport, new_collection, register_documents
from onnxvec.sources.files import SourceDocument, size_text
from onnxvec.storage import collections, documents, stats
from onnxvec.storage.collections import Collection
from onnxvec.values import unstorable

router = APIRouter(prefix="/v1/collections")

Wait = Annotated[bool, Query(description="answer once they are done or failed, within ONNXVEC_DOCUMENTS_WAIT_SECONDS")]


def accepted_responses(*errors: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a documents POST: 202, 200 with wait=true, and `errors`."""
    waited = {"model": DocumentsAccepted, "description": "With wait=true: every queued document is done or failed."}
    return {200: waited, **error_responses(*errors)}


SOURCE = "api"  # the `source` of documents posted over HTTP
WAIT_POLL_SECONDS = 0.25


def collection_object(collection: Collection, states: dict[str, int], chunks: int) -> dict[str, Any]:
    """The collection as the list and every collection route write it."""
    return {
        "object": "collection",
        "id": collection.name,
        "model": collection.model,
        "dims": collection.dims,
        "metric": collection.metric,
        "chunk_tokens": collection.chunk_tokens,
        "chunk_overlap": collection.chunk_overlap,
        "hidden_metadata": list(collection.hidden_metadata),
        "language": collection.language,
        "documents": states,
        "chunks": chunks,
        "version": collection.version,
    }


def _db(request: Request) -> Engine:
    return request.app.state.db


def _settings(request: Request) -> Settings:
    return request.app.state.settings


@router.get("", response_class=JSON, response_model=CollectionList)
async def list_collections(request: Request) -> JSON:
    found = await asyncio.to_thread(_all, _db(request))
    return JSON({"object": "list", "data": [c for c in found if request.state.grant.allows(c["id"])]})


def _all(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = collections.list_collections(conn)
        states: dict[str, dict[str, int]] = {}
        for name, state, count in stats.counts_by_collection(conn):
            states.setdefault(name, {})[state] = count
        chunks = dict(stats.chunks_by_collection(conn))
    return [collection_object(c, states.get(c.name, {}), chunks.get(c.name, 0)) for c in rows]


@router.post(
    "",
    status_code=201,
    response_class=JSON,
    response_model=CollectionObject,
    responses=error_responses(400, 403, 404, 413),
)
async def create_collection(body: CollectionRequest, request: Request) -> JSON:
    """A new collection for a pulled embedding model (as `onnxvec collections create`); a name taken is
    a 400 on `name`. A key scoped to collections may create only those its grant names."""
    if not request.state.grant.allows(body.name):
        message = f"This API key is limited to other collections: it cannot create {body.name!r}."
        raise APIError(403, message, param="name", code="forbidden")
    created = await asyncio.to_thread(_create, _db(request), _settings(request), body)
    return JSON(collection_object(created, {}, 0), status_code=201)


def _create(db: Engine, settings: Settings, body: CollectionRequest) -> Collection:
    with db.begin() as conn:
        return new_collection(
            conn,
            settings,
            body.name,
            body.model,
            body.metric,
            chunk_tokens=body.chunk_tokens,
            chunk_overlap=body.chunk_overlap,
            language=body.language,
            pull_model=False,
        )


@router.get("/{name}", response_class=JSON, response_model=CollectionObject, responses=error_responses(404))
async def get_collection(name: str, request: Request) -> JSON:
    """The collection with its documents by state and its chunks."""
    reachable(request, name)
    return JSON(await asyncio.to_thread(_one, _db(request), name))


def _one(db: Engine, name: str) -> dict[str, Any]:
    with db.connect() as conn:
        collection = collections.get_collection(conn, name)
        counts = stats.counts(conn, collection)
    return collection_object(collection, counts["documents"], counts["chunks"])


@router.delete("/{name}", response_class=JSON, response_model=Deleted, responses=error_responses(400, 404))
async def delete_collection(name: str, request: Request) -> JSON:
    """The collection, its documents, chunks and index (one fed by a table source is refused: 400)."""
    reachable(request, name)
    await asyncio.to_thread(_drop, _db(request), name)
    return JSON({"id": name, "object": "collection.deleted", "deleted": True})


def _drop(db: Engine, name: str) -> None:
    with db.begin() as conn:
        collections.drop_collection(conn, name)


@router.post(
    "/{name}/documents",
    status_code=202,
    response_class=JSON,
    response_model=DocumentsAccepted,
    responses=accepted_responses(400, 404, 413),
)
async def post_documents(name: str, body: DocumentsRequest, request: Request, wait: Wait = False) -> JSON:
    """Register documents as `onnxvec ingest` does: new and changed ones (by id and content hash) are
    queued for the workers, unchanged ones are not embedded again. 202 while any is unfinished."""
    reachable(request, name)
    collection, report = await asyncio.to_thread(_register, request, name, body)
    return await accepted(request, collection, report, wait)


async def accepted(request: Request, collection: Collection, report: IngestReport, wait: bool) -> JSON:
    """The answer to a documents POST: what was queued or unchanged, and the queued ones by state, once
    they are all done or failed when `wait` (within ONNXVEC_DOCUMENTS_WAIT_SECONDS)."""
    queued = list(dict.fromkeys(report.queued))  # a document a stream changed twice was queued twice
    timeout = _settings(request).documents_wait_seconds if wait else 0.0
    states = await _settled(_db(request), collection, queued, timeout)
    complete = states["pending"] + states["processing"] == 0
    answer = {
        "object": "collection.documents",
        "collection": collection.name,
        "queued": len(queued),
        "unchanged": report.unchanged,
        "failed": report.failed_to_load,
        "documents": states,
        "complete": complete,
    }
    return JSON(answer, status_code=200 if wait and complete else 202)


def _register(request: Request, name: str, body: DocumentsRequest) -> tuple[Collection, IngestReport]:
    """One per id (a later one replaces an earlier, as if posted after it), checked once the collection
    is known to exist (so a missing collection is a 404 whatever the body, as /v1/search does for filters)."""
    settings, db = _settings(request), _db(request)
    with db.connect() as conn:
        collection = collections.get_collection(conn, name)
    latest = {d.id: (i, d) for i, d in enumerate(body.documents)}
    docs = [source_document(d, f"documents.{i}", settings.max_document_bytes) for i, d in latest.values()]
    report = IngestReport(collection.name)
    register_documents(db, request.app.state.celery, settings, collection, docs, report)
    return collection, report


def source_document(doc: DocumentIn, where: str, limit: int) -> SourceDocument:
    """A posted document as `ingest` loads one: text over ONNXVEC_MAX_DOCUMENT_BYTES is recorded as
    failed like an oversized file; a value PostgreSQL cannot hold is a 400 on its field (`where`)."""
    for field, value in (("id", doc.id), ("text", doc.text), ("metadata", doc.metadata)):
        reason = unstorable(value)
        if reason:
            raise InvalidRequest(f"PostgreSQL cannot store {reason}", f"{where}.{field}")
    if len(doc.text.encode()) <= limit:
        return SourceDocument(doc.id, SOURCE, doc.text, doc.metadata)
    return SourceDocument(doc.id, SOURCE, "", doc.metadata, f"text is over the {size_text(limit)} limit")


async def _settled(db: Engine, collection: Collection, ids: list[int], timeout: float) -> dict[str, int]:
    """The documents' states once none is pending or processing, or when `timeout` seconds have passed;
    polled from a thread between sleeps, so a waiting request holds neither the loop nor a thread."""
    deadline = time.monotonic() + timeout
    while True:
        states = await asyncio.to_thread(_states, db, collection, ids)
        left = deadline - time.monotonic()
        if states["pending"] + states["processing"] == 0 or left <= 0:
            return states
        await asyncio.sleep(min(WAIT_POLL_SECONDS, left))


def _states(db: Engine, collection: Collection, ids: list[int]) -> dict[str, int]:
    with db.connect() as conn:
        return stats.counts(conn, collection, ids)["documents"]


@router.get(
    "/{name}/documents/{document_id:path}",
    response_class=JSON,
    response_model=Document,
    responses=error_responses(404),
)
async def get_document(name: str, document_id: str, request: Request) -> JSON:
    """A document's state, last error, attempts, metadata and chunks."""
    reachable(request, name)
    found = await asyncio.to_thread(_document, _db(request), name, document_id)
    return JSON(
        {
            "object": "document",
            "id": found.external_id,
            "collection": name,
            "source": found.source,
            "state": found.state,
            "error": found.error,
            "attempts": found.attempts,
            "metadata": found.metadata,
            "chunks": found.chunks,
            "updated_at": int(found.updated_at.timestamp()),
        }
    )


def _document(db: Engine, name: str, document_id: str) -> documents.Described:
    with db.connect() as conn:
        found = documents.describe(conn, collections.get_collection(conn, name), document_id)
    if found is None:
        raise _no_document(name, document_id)
    return found


@router.delete(
    "/{name}/documents/{document_id:path}",
    response_class=JSON,
    response_model=Deleted,
    responses=error_responses(404),
)
async def delete_document(name: str, document_id: str, request: Request) -> JSON:
    """The document and its chunks: search stops finding it at once."""
    reachable(request, name)
    await asyncio.to_thread(_remove, _db(request), name, document_id)
    return JSON({"id": document_id, "object": "document.deleted", "deleted": True})


def _remove(db: Engine, name: str, document_id: str) -> None:
    with db.begin() as conn:
        if not documents.remove(conn, collections.get_collection(conn, name), [document_id]):
            raise _no_document(name, document_id)


def _no_document(name: str, document_id: str) -> DocumentNotFound:
    return DocumentNotFound(f"collection {name!r} has no document {document_id[:100]!r}")
