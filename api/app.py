"""The FastAPI application: wiring of settings, services, auth, limits and routes.

`create_app(settings)` builds one independent app (its own metrics registry and model instances),
so tests can run several; `onnxvec serve` runs one under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api import errors
from api.chat import router as chat_router
from api.guard import Guard
from api.metrics import Metrics
from api.routes import JSON, router
from onnxvec import db, services
from onnxvec.chat import ChatService
from onnxvec.config import Settings, get_settings
from onnxvec.keys import KeyRing
from onnxvec.modelstore import ModelError
from onnxvec.service import EmbeddingService

log = logging.getLogger(__name__)


async def authorize(request: Request) -> None:
    """Bearer auth, on as soon as any key exists (environment or database)."""
    ring: KeyRing = request.app.state.keys
    valid = ring.current() if ring.fresh() else await asyncio.to_thread(ring.current)
    if not valid:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise errors.APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    if not ring.accepts(key.strip(), valid):
        shown = key.strip()[:7] + "..." if len(key.strip()) > 7 else "..."
        raise errors.APIError(401, f"Incorrect API key provided: {shown}", code="invalid_api_key")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    endpoints = services.ensure_services(settings)
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
    app.state.metrics = metrics
    app.state.service = service
    app.state.chat = chat
    env_keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    app.state.keys = KeyRing(database, env_keys)
    errors.install(app)
    app.add_middleware(
        Guard,
        max_body=settings.max_request_bytes,
        max_buffered=settings.max_buffered_bytes,
        max_in_flight=settings.max_concurrent_requests,
        metrics=metrics,
    )
    app.include_router(router, dependencies=[Depends(authorize)])
    app.include_router(chat_router, dependencies=[Depends(authorize)])
    _probes(app)
    return app


def _probes(app: FastAPI) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", dependencies=[Depends(authorize)])
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

    @app.get("/metrics", dependencies=[Depends(authorize)])
    async def metrics(request: Request) -> Response:
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
