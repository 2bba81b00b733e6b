"""Limits every request meets before it reaches a route: body size (413), requests in flight (429),
and the per-route request metrics. Pure ASGI, so streamed bodies are counted as they arrive.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.metrics import Metrics

UNLIMITED = {"/health", "/metrics"}  # probes and scrapes must answer even when the API is saturated


class Guard:
    def __init__(self, app: ASGIApp, *, max_body: int, max_in_flight: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.metrics = metrics
        self.in_flight = 0

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
            try:
                body = await self._read_body(scope, receive)
                if body is None:
                    response = error_response(
                        413, f"The request body exceeds {self.max_body} bytes.", code="request_too_large"
                    )
                    await response(scope, receive, send_status)
                    return
                await self.app(scope, _replay(body, receive), send_status)
            finally:
                self.in_flight -= limited
        finally:
            route = _route(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to be over the limit (header or bytes read)."""
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


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
