"""How uvicorn serves the app: one configuration for `onnxvec serve` and the tests, with a bound on
how long a client may take to send its request headers (uvicorn has none: a client trickling a header
line every few seconds would hold its connection forever)."""

from __future__ import annotations

import asyncio
import json

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import error_body
from onnxvec.config import Settings

_TIMEOUT_BODY = json.dumps(
    error_body(408, "The request headers did not arrive in time.", code="request_timeout")
).encode()
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + f"content-length: {len(_TIMEOUT_BODY)}\r\n\r\n".encode()
    + _TIMEOUT_BODY
)


class HeaderDeadline(HttpToolsProtocol):
    """Closes a connection with 408 when a request's headers are not complete `header_timeout` seconds
    after the connection opened or the request's first byte arrived. A request pipelined behind one
    still being answered starts its clock when that answer is complete: a slow response never
    counts against the next request, and no 408 is ever written into a response."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._arm()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._cancel_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._reading_headers:
            self._arm()

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        if self._deadline is None and not self._answering():
            self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._answering():  # its clock restarts when the answer is complete
            return
        if not self.transport.is_closing():
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()


def server_config(app: FastAPI, settings: Settings, **options: object) -> uvicorn.Config:
    """uvicorn's configuration for `app`; `options` are passed on (host, port, log level...)."""
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": settings.header_timeout_seconds})
    return uvicorn.Config(app, http=protocol, timeout_graceful_shutdown=10, **options)
