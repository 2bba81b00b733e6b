"""Every error leaves the API in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

FastAPI's own validation body (a list of pydantic errors, status 422) is replaced by OpenAI's 400
invalid_request_error naming the offending parameter, and anything unexpected becomes a 500 in the
same shape with no traceback (the traceback goes to the log).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from api.disconnect import GONE, ClientGone
from onnxvec.errors import OnnxvecError

log = logging.getLogger(__name__)

TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error the client should see, with OpenAI's fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error"), "param": param, "code": code}}


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


# pydantic names the member of a union it tried ("str", "list[int]", "function-after[...]") in an
# error's location: not a parameter a client can find in its request
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|dict|list|none|null|[a-z-]+\[.*\]|[a-z]+-[a-z-]+)$")


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """The message and parameter of the first of pydantic's `errors` (a body's, or one NDJSON line's)."""
    first = errors[0]
    location = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_MEMBER.match(str(p))]
    param = ".".join(location) or None
    kind = first.get("type")
    if kind == "json_invalid":
        return "We could not parse the JSON body of your request.", None
    if kind == "missing" and not location:
        return "The request needs a JSON body.", None
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    where = f" at '{param}'" if param else ""
    return f"Invalid value{where}: {first.get('msg', 'invalid')}", param


def _allowed(request: Request) -> str:
    """Every method the path answers: Starlette's 405 names only the first route's, and a path served by
    several routes (GET and POST /v1/collections) has more."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] == Match.PARTIAL:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into OpenAI's error body."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(OnnxvecError)
    async def _onnxvec(request: Request, exc: OnnxvecError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(exc.status, exc.public_message(), exc.param, exc.code, exc.headers)

    @app.exception_handler(ClientGone)
    async def _gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=GONE)

    @app.exception_handler(OperationalError)
    @app.exception_handler(RedisConnectionError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: backing service unavailable: %s", request.method, request.url.path, exc)
        return error_response(503, "A backing service (database or queue) is unavailable; retry later.")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc.errors())
        return error_response(400, message, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "Unknown route." if exc.status_code == 404 else str(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request)
        return error_response(exc.status_code, message, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "The server had an error while processing your request.")
