"""/v1/sources: the tables kept embedded, with their lag (what `onnxvec sources status` shows). A key
scoped to collections sees only the sources that feed them."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Engine

from api.routes import JSON
from api.schemas import Source, SourceList, error_responses
from onnxvec.errors import SourceNotFound
from onnxvec.ingest import sync
from onnxvec.storage import table_sources

router = APIRouter(prefix="/v1")


def _statuses(db: Engine, name: str | None = None) -> list[dict[str, Any]]:
    with db.connect() as conn:
        found = [table_sources.get(conn, name)] if name is not None else table_sources.list_sources(conn)
        return [sync.status(conn, source) for source in found]


@router.get("/sources", response_class=JSON, response_model=SourceList)
async def list_sources(request: Request) -> JSON:
    found = await asyncio.to_thread(_statuses, request.app.state.db)
    return JSON({"object": "list", "data": [s for s in found if request.state.grant.allows(s["collection"])]})


@router.get("/sources/{name}", response_class=JSON, response_model=Source, responses=error_responses(404))
async def get_source(name: str, request: Request) -> JSON:
    (found,) = await asyncio.to_thread(_statuses, request.app.state.db, name)
    if not request.state.grant.allows(found["collection"]):  # feeding a collection the key cannot see
        raise SourceNotFound(f"no source named {name!r}")
    return JSON(found)
