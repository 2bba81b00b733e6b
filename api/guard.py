"""What every request meets before it reaches a route, in this order: authentication (401: an
unauthenticated request is never counted or read), requests in flight (429), body size (413), bytes
of request bodies held at once (429), the time to send the body (408); and the per-route request
metrics. Pure ASGI, so streamed bodies are counted as they arrive. The one route that takes a body of
any size (NDJSON documents) reads it itself, a line at a time, and is counted as holding one body.
"""

from __future__ import annotations

import asyncio
import re
import time

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import refusal
from api.errors import error_response
from api.metrics import Metrics
from onnxvec.storage.keys import KeyRing

UNLIMITED = {"/health", "/metrics"}  # probes and scrapes must answer even when the API is saturated
STREAMED = re.compile(r"/v1/collections/[^/]+/documents/stream")  # api/document_stream.py: NDJSON, any size


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        max_body: int,
        max_buffered: int,
        max_in_flight: int,
        body_timeout: float,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.keys = keys
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.max_buffered = max_buffered
        self.max_in_flight = max_in_flight
        self.metrics = metrics
        self.in_flight = 0
        self.buffered = 0  # bytes of request bodies read and held, all requests together

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what an exception escaping the app becomes

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        limited = scope["path"] not in UNLIMITED
        try:
            refused = await refusal(self.keys, scope)
            if refused is not None:
                await refused(scope, receive, send_status)
                return
            if limited and self.in_flight >= self.max_in_flight:
                response = error_response(
                    429,
                    f"The server is handling {self.in_flight} requests; retry shortly.",
                    code="too_many_requests",
                    headers={"Retry-After": "1"},
                )
                await response(scope, receive, send_status)
                return
            self.in_flight += limited
            held = 0
            try:
                if _streamed(scope):  # the route reads it a line at a time: hold one body's worth for it
                    body = 429 if self.buffered + self.max_body > self.max_buffered else None
                else:
                    body = await self._read_body(scope, receive)
                if isinstance(body, int):
                    response = _refusal(body, self.max_body)
                    await response(scope, receive, send_status)
                    return
                if body is None:
                    held = self.max_body
                    self.buffered += held
                    await self.app(scope, receive, send_status)
                else:
                    held = len(body)
                    await self.app(scope, _replay(body, receive), send_status)
            finally:
                self.in_flight -= limited
                self.buffered -= held
        finally:
            route = _route(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | int:
        """The whole body (counted in `buffered` from then on), or the status that refuses it as soon as
        that is known: 413 over the per-request limit, 429 when the bodies held at once would pass theirs,
        408 when it has not all arrived within `body_timeout` seconds (a slow client holds no slot longer)."""
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return 413
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.body_timeout
        try:
            while True:
                try:
                    message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    self.buffered -= size
                    return 408
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                if size + len(chunk) > self.max_body or self.buffered + len(chunk) > self.max_buffered:
                    self.buffered -= size
                    return 413 if size + len(chunk) > self.max_body else 429
                size += len(chunk)
                self.buffered += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except BaseException:  # the client went away mid-body: nothing stays counted
            self.buffered -= size
            raise
        return b"".join(chunks)


def _streamed(scope: Scope) -> bool:
    return scope["method"] == "POST" and STREAMED.fullmatch(scope["path"]) is not None


def _refusal(status: int, max_body: int) -> Response:
    if status == 408:
        return error_response(408, "The request body did not arrive in time.", code="request_timeout")
    if status == 413:
        return error_response(413, f"The request body exceeds {max_body} bytes.", code="request_too_large")
    message = "The server holds as many request bodies as it has memory for; retry shortly."
    return error_response(429, message, code="too_many_requests", headers={"Retry-After": "1"})


def _route(scope: Scope) -> str:
    """The template of the route that served the request (/v1/models/{model_id}), which routing leaves
    in the scope, so metrics do not grow a series per id; requests that reached no route (unknown
    paths, and those refused with 413/429 before routing) share one label."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the client's own messages (a streaming response awaits its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
