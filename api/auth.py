"""Bearer authentication, checked before a request is admitted: an unauthenticated request is never
counted in flight and its body is never read (api/guard.py calls `refusal` first)."""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.security import HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response
from starlette.types import Scope

from api.errors import error_response
from onnxvec.errors import CollectionNotFound
from onnxvec.storage.keys import EVERYTHING, KeyRing, digest

OPEN = {"/health"}  # liveness only: the document (/openapi.json, /docs, /redoc) needs a key like the rest
# what a read-only key may call: reading methods, and the POST routes that only compute or search;
# any other route (every one that writes, including those added later) is refused to it
READING_METHODS = {"GET", "HEAD", "OPTIONS"}
READING_POSTS = {"/v1/embeddings", "/v1/search", "/v1/chat/completions", "/v1/completions", "/v1/rerank", "/rerank"}

# Declares the scheme in the OpenAPI document; the header itself is read by `refusal`, so that a
# missing key and a wrong one get OpenAI's 401 bodies.
bearer = HTTPBearer(
    auto_error=False,
    description="An API key; required once any was created (ONNXVEC_API_KEYS, `onnxvec keys create`) "
    "or with ONNXVEC_AUTH=required, until ONNXVEC_AUTH=off.",
)


async def refusal(ring: KeyRing, scope: Scope) -> Response | None:
    """The 401 (or 503, when the keys were never readable) that refuses this request, or None. An
    admitted request carries its key's Grant in `request.state.grant`, and in `request.state.owner`
    who it is for fair turns at the model: its key, or its address when no key is asked for."""
    client = scope.get("client")
    scope.setdefault("state", {}).update(grant=EVERYTHING, owner=client[0] if client else "")
    if scope["path"] in OPEN:
        return None
    try:
        state = ring.current() if ring.fresh() else await asyncio.to_thread(ring.current)
    except SQLAlchemyError:
        return error_response(503, "The API keys cannot be read: the database is unavailable; retry later.")
    if not state.required:
        return None
    header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        message = "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
        return error_response(401, message, code="missing_api_key")
    grant = ring.grant(key, state)
    if grant is None:
        shown = key[:7] + "..." if len(key) > 7 else "..."
        return error_response(401, f"Incorrect API key provided: {shown}", code="invalid_api_key")
    scope["state"].update(grant=grant, owner=digest(key))  # one client per key, however the header is spelt
    if grant.read_only and not reads(scope["method"], scope["path"]):
        message = f"This API key is read-only: it cannot call {scope['method']} {scope['path']}."
        return error_response(403, message, code="read_only_key")
    return None


def reads(method: str, path: str) -> bool:
    """Whether a route only reads: the one list a read-only key is checked against."""
    return method in READING_METHODS or (method == "POST" and path in READING_POSTS)


def reachable(request: Request, collection: str) -> None:
    """A collection outside the key's grant is answered as one that does not exist (404): a scoped key
    learns nothing of the others."""
    if not request.state.grant.allows(collection):
        raise CollectionNotFound(f"collection {collection!r} does not exist")
