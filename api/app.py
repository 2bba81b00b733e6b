"""The FastAPI application: wiring of settings, services, auth, limits and routes.

`create_app(settings)` builds one independent app (its own metrics registry and model instances),
so tests can run several; `onnxvec serve` runs one under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI, Request, Response, Security
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic.json_schema import models_json_schema
from sqlalchemy import text

from api import errors
from api.auth import bearer
from api.chat import router as chat_router
from api.chat_schemas import ChatCompletionChunk
from api.collections import router as collections_router
from api.completions import router as completions_router
from api.document_stream import router as document_stream_router
from api.guard import Guard
from api.metrics import Metrics
from api.rerank import router as rerank_router
from api.routes import JSON, router
from api.schemas import Health, NotReady, Ready, error_responses
from api.sources import router as sources_router
from api.versions import router as versions_router
from onnxvec.chat.service import ChatService
from onnxvec.config import Settings, get_settings
from onnxvec.embedding.service import EmbeddingService
from onnxvec.errors import ModelError
from onnxvec.infra import broker, db, embedded
from onnxvec.storage.keys import KeyRing

log = logging.getLogger(__name__)

# the bearer scheme on every route but /health, in the document; api/auth.py enforces it in Guard
secured = [Security(bearer)]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    endpoints = embedded.ensure_services(settings)
    database = db.make_engine(endpoints.database_url)
    db.upgrade(database)
    metrics = Metrics(database, endpoints.redis_url)
    service = EmbeddingService(settings, on_batch=metrics.on_batch)
    chat = ChatService(settings, database, service)
    metrics.queued_inputs.set_function(service.queued_inputs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:  # load the default model now, so the first request does not pay for it
            await service.batcher(None)
        except ModelError as exc:
            log.warning("default model not loaded: %s (/ready reports it)", exc)
        try:
            await chat.load()
        except ModelError as exc:
            log.warning("default chat model not loaded: %s (chat requests will say so)", exc)
        yield
        await chat.close()
        await service.close()
        database.dispose()

    app = FastAPI(
        title="onnxvec",
        version="0.1.0",
        summary="OpenAI-compatible embeddings and semantic search over PostgreSQL + pgvector",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.redis_url = endpoints.redis_url
    app.state.celery = broker.make_app(settings, endpoints.redis_url)  # documents posted go to the workers
    app.state.metrics = metrics
    app.state.service = service
    app.state.chat = chat
    env_keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    keyring = KeyRing(database, env_keys, settings.auth)
    if settings.auth == "off":
        log.warning("ONNXVEC_AUTH=off: the API answers anyone, whatever keys exist")
    app.state.keys = keyring
    errors.install(app)
    app.add_middleware(
        Guard,
        keys=keyring,
        body_timeout=settings.body_timeout_seconds,
        max_body=settings.max_request_bytes,
        max_buffered=settings.max_buffered_bytes,
        max_in_flight=settings.max_concurrent_requests,
        metrics=metrics,
    )
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # outside Guard: preflights need no key and skip the limits, and 401/413/429 carry the header
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],  # Authorization, Content-Type and the headers OpenAI's JS client adds
            expose_headers=["Retry-After", "Server-Timing", "X-Truncated-Inputs"],
        )
    shared = error_responses(401, 408, 429, 503)  # Guard's: auth (its key lookup reads the database) and limits
    app.include_router(router, dependencies=secured, responses=shared)
    app.include_router(collections_router, dependencies=secured, responses=shared)
    app.include_router(document_stream_router, dependencies=secured, responses=shared)
    app.include_router(versions_router, dependencies=secured, responses=shared)
    app.include_router(chat_router, dependencies=secured, responses=shared)
    app.include_router(completions_router, dependencies=secured, responses=shared)
    app.include_router(sources_router, dependencies=secured, responses=shared)
    app.include_router(rerank_router, dependencies=secured, responses=shared)
    _probes(app)
    app.openapi = _openapi(app)
    return app


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document without its 422s (validation errors are OpenAI's 400s, api/errors.py), and with
    the chunk model of streamed chat completions, which no route returns as JSON."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for methods in schema["paths"].values():
                for operation in methods.values():
                    operation["responses"].pop("422", None)
            components = schema["components"]["schemas"]
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            _, chunk = models_json_schema(
                [(ChatCompletionChunk, "serialization")], ref_template="#/components/schemas/{model}"
            )
            components.update(chunk["$defs"])
        return app.openapi_schema

    return openapi


def _probes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, responses=error_responses())
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    not_ready = {"model": NotReady, "description": "A check failed, or the key lookup could not reach the database."}

    @app.get(
        "/ready",
        dependencies=secured,
        response_model=Ready,
        responses={**error_responses(401, 408, 429), 503: not_ready},
    )
    async def ready(request: Request) -> Response:
        """Readiness: the database and Redis answer and the default model is loaded."""
        checks = await asyncio.to_thread(_backends, request.app.state.db, request.app.state.redis_url)
        service: EmbeddingService = request.app.state.service
        checks["model"] = service.loaded(service.settings.embedding_model)
        if all(checks.values()):
            return JSON({"status": "ready", "checks": checks})
        down = ", ".join(name for name, ok in checks.items() if not ok)
        body = errors.error_body(503, f"Not ready: {down} unavailable.") | {"checks": checks}
        return JSON(body, status_code=503)

    @app.get(
        "/metrics",
        dependencies=secured,
        response_class=Response,  # no media type of its own, so the errors stay application/json
        responses={
            200: {"description": "Prometheus' text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **error_responses(401, 403, 408, 503),
        },
    )
    async def metrics(request: Request) -> Response:
        if request.state.grant.collections is not None:  # its series name every collection
            raise errors.APIError(403, "A key limited to collections cannot read the metrics.", code="forbidden")
        registry = request.app.state.metrics.registry
        return Response(await asyncio.to_thread(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)


def _backends(database, redis_url: str) -> dict[str, bool]:
    checks = {"database": False, "redis": False}
    try:
        with database.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:  # noqa: BLE001 (any failure means not ready)
        log.warning("readiness: database check failed", exc_info=True)
    try:
        checks["redis"] = bool(redis.Redis.from_url(redis_url, socket_timeout=2).ping())
    except redis.RedisError:
        log.warning("readiness: redis check failed", exc_info=True)
    return checks
