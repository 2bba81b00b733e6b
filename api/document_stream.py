"""POST /v1/collections/{name}/documents/stream: documents as NDJSON, one object per line, of any total size.

Lines are parsed as they arrive and registered in slices (MAX_DOCUMENTS documents, or
ONNXVEC_MAX_REQUEST_BYTES of lines) through the same `register_documents` as the JSON route and
`onnxvec ingest`, so the server holds one slice, never the body (api/guard.py passes this route's body
through unread and counts one request body's worth of memory for it). A bad line stops the stream
with its error after the lines before it are registered; the error says how many were, and posting
the stream again is cheap (unchanged documents are not embedded again).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import Engine
from starlette.requests import ClientDisconnect

from api.auth import reachable
from api.collection_schemas import MAX_DOCUMENTS, DocumentIn, DocumentsAccepted
from api.collections import Wait, accepted, accepted_responses, source_document
from api.disconnect import ClientGone
from api.errors import APIError, validation_message
from api.routes import JSON
from onnxvec.errors import InvalidRequest
from onnxvec.ingest.register import IngestReport, register_documents
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import collections
from onnxvec.storage.collections import Collection

router = APIRouter(prefix="/v1/collections")

NDJSON = "application/x-ndjson"
BODY = {
    "required": True,
    "description": "one document object per line (as in `documents` of the JSON route); blank lines are skipped",
    "content": {
        NDJSON: {"schema": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/DocumentIn"}}}
    },
}


@router.post(
    "/{name}/documents/stream",
    status_code=202,
    response_class=JSON,
    response_model=DocumentsAccepted,
    responses=accepted_responses(400, 404, 408, 413),
    openapi_extra={"requestBody": BODY},
)
async def stream_documents(name: str, request: Request, wait: Wait = False) -> JSON:
    """Register an NDJSON stream of documents as the JSON route does, a slice at a time while it arrives."""
    reachable(request, name)
    settings, db, celery = request.app.state.settings, request.app.state.db, request.app.state.celery
    collection = await asyncio.to_thread(_collection, db, name)  # a missing one is a 404 before any line is read
    report = IngestReport(collection.name)
    pending: dict[str, SourceDocument] = {}  # this slice, by id: a later line replaces an earlier one
    held = 0

    async def register() -> None:
        nonlocal pending, held
        if pending:
            docs = list(pending.values())
            await asyncio.to_thread(register_documents, db, celery, settings, collection, docs, report)
        pending, held = {}, 0

    try:
        async for number, line in _lines(request, settings.max_request_bytes, settings.body_timeout_seconds):
            doc = _document(number, line, settings.max_document_bytes)
            pending[doc.external_id] = doc
            held += len(line)
            if len(pending) >= MAX_DOCUMENTS or held >= settings.max_request_bytes:
                await register()
    except ClientDisconnect:  # the lines that arrived whole are kept; nobody is left to answer
        await register()
        raise ClientGone from None
    except APIError as stopped:
        await register()
        raise _after(stopped, report.documents) from None
    await register()
    if not report.documents:
        raise APIError(400, "The body holds no documents: send one JSON object per line.", code="invalid_value")
    return await accepted(request, collection, report, wait)


def _collection(db: Engine, name: str) -> Collection:
    with db.connect() as conn:
        return collections.get_collection(conn, name)


async def _lines(request: Request, limit: int, idle_timeout: float) -> AsyncIterator[tuple[int, bytes]]:
    """The body's non-blank lines with their numbers (from 1) as they arrive: 413 for a line over
    `limit` bytes, 408 when nothing arrives for `idle_timeout` seconds."""
    chunks = request.stream()
    buffer = bytearray()
    number = 0
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), idle_timeout)
        except StopAsyncIteration:
            break
        except TimeoutError:
            message = f"No part of the body arrived for {idle_timeout:g} seconds."
            raise APIError(408, message, code="request_timeout") from None
        start, scan = 0, len(buffer)
        buffer += chunk
        while (end := buffer.find(b"\n", scan)) >= 0:
            number += 1
            line = bytes(buffer[start:end])
            start = scan = end + 1
            if len(line) > limit:
                raise _too_long(number, limit)
            if line.strip():
                yield number, line
        del buffer[:start]
        if len(buffer) > limit:
            raise _too_long(number + 1, limit)
    if bytes(buffer).strip():
        yield number + 1, bytes(buffer)


def _too_long(number: int, limit: int) -> APIError:
    return APIError(413, f"Line {number} exceeds {limit} bytes.", param=f"line {number}", code="request_too_large")


def _document(number: int, line: bytes, limit: int) -> SourceDocument:
    """One line as `ingest` loads a document, or a 400 naming the line (and the field, as the JSON route
    names it)."""
    try:
        return source_document(_parse(number, line), f"line {number}", limit)
    except InvalidRequest as exc:
        raise APIError(400, f"Line {number}: {exc.public_message()}", param=exc.param, code=exc.code) from None


def _parse(number: int, line: bytes) -> DocumentIn:
    try:
        return DocumentIn.model_validate_json(line)
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0].get("type") == "json_invalid":
            message = f"Line {number} is not valid JSON."
            raise APIError(400, message, param=f"line {number}", code="invalid_value") from None
        message, field = validation_message(errors)
        where = f"line {number}" + (f".{field}" if field else "")
        raise APIError(400, f"Line {number}: {message}", param=where, code="invalid_value") from None


def _after(stopped: APIError, registered: int) -> APIError:
    """The error that stopped the stream, saying what became of the lines before it."""
    message = stopped.message
    if registered:
        message += f" The {registered} documents before it were registered; sending them again changes nothing."
    else:
        message += " No document was registered."
    return APIError(stopped.status, message, param=stopped.param, code=stopped.code)
