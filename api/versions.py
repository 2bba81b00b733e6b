"""/v1/collections/{name}/versions: start a re-embedding, list versions with their build's progress,
activate (roll forward or back), pause and resume a build: the routes over onnxvec/ingest/reembed.py,
as `onnxvec collections reembed | versions | activate | pause | resume` are on the command line."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Engine

from api.auth import reachable
from api.collection_schemas import VersionList, VersionObject, VersionRequest
from api.routes import JSON
from api.schemas import error_responses
from onnxvec.config import Settings
from onnxvec.infra import broker
from onnxvec.ingest import reembed
from onnxvec.storage import collections, versions

router = APIRouter(prefix="/v1/collections")


def version_object(name: str, v: versions.Version) -> dict[str, Any]:
    return {
        "object": "collection.version",
        "collection": name,
        "version": v.version,
        "model": v.model,
        "dims": v.dims,
        "metric": v.metric,
        "chunk_tokens": v.chunk_tokens,
        "chunk_overlap": v.chunk_overlap,
        "state": v.state,
        "active": v.active,
        "progress": round(v.progress, 4),
        "eta_seconds": v.eta_seconds(datetime.now(UTC)),
        "documents": v.built_documents,
        "chunks": v.chunks,
        "embedded_chunks": v.embedded_chunks,
        "reused_chunks": v.reused_chunks,
        "created_at": int(v.created_at.timestamp()),
        "built_at": None if v.built_at is None else int(v.built_at.timestamp()),
        "error": v.error,
    }


@router.post(
    "/{name}/versions",
    status_code=202,
    response_class=JSON,
    response_model=VersionObject,
    responses=error_responses(400, 404),
)
async def start_version(name: str, body: VersionRequest, request: Request) -> JSON:
    """A new embedding version built by the workers from the stored text, while search keeps using the
    active one; it becomes active once built (unless `activate` is false). 202: building."""
    reachable(request, name)
    state = request.app.state
    version = await asyncio.to_thread(_start, state.db, state.settings, name, body)
    await asyncio.to_thread(broker.enqueue_build, state.celery, version.id)
    return JSON(version_object(name, version), status_code=202)


def _start(db: Engine, settings: Settings, name: str, body: VersionRequest) -> versions.Version:
    with db.begin() as conn:
        return reembed.start(
            conn,
            settings,
            collections.get_collection(conn, name),
            model=body.model,
            metric=body.metric,
            chunk_tokens=body.chunk_tokens,
            chunk_overlap=body.chunk_overlap,
            activate=body.activate,
        )


@router.get("/{name}/versions", response_class=JSON, response_model=VersionList, responses=error_responses(404))
async def list_versions(name: str, request: Request) -> JSON:
    reachable(request, name)
    found = await asyncio.to_thread(_versions, request.app.state.db, name)
    return JSON({"object": "list", "data": [version_object(name, v) for v in found]})


def _versions(db: Engine, name: str) -> list[versions.Version]:
    with db.connect() as conn:
        return versions.list_versions(conn, collections.get_collection(conn, name).id)


@router.post(
    "/{name}/versions/{version}/activate",
    response_class=JSON,
    response_model=VersionObject,
    responses=error_responses(400, 404),
)
async def activate_version(name: str, version: int, request: Request) -> JSON:
    """Make a built version the active one: search and chat switch at once, in one transaction."""
    return await _act(request, name, version, "activate")


@router.post(
    "/{name}/versions/{version}/pause",
    response_class=JSON,
    response_model=VersionObject,
    responses=error_responses(400, 404),
)
async def pause_version(name: str, version: int, request: Request) -> JSON:
    """Stop the version's build where it is; ingest keeps writing to it."""
    return await _act(request, name, version, "pause")


@router.post(
    "/{name}/versions/{version}/resume",
    response_class=JSON,
    response_model=VersionObject,
    responses=error_responses(400, 404),
)
async def resume_version(name: str, version: int, request: Request) -> JSON:
    return await _act(request, name, version, "resume")


async def _act(request: Request, name: str, number: int, action: str) -> JSON:
    reachable(request, name)
    state = request.app.state
    found = await asyncio.to_thread(_apply, state.db, name, number, action)
    if action == "resume":
        await asyncio.to_thread(broker.enqueue_build, state.celery, found.id, found.built_through)
    return JSON(version_object(name, found))


def _apply(db: Engine, name: str, number: int, action: str) -> versions.Version:
    with db.begin() as conn:
        collection = collections.get_collection(conn, name)
        if action == "activate":
            reembed.activate(conn, collection, number)
        else:
            reembed.pause(conn, collection, number, paused=action == "pause")
        return versions.get_version(conn, collection.id, number)
