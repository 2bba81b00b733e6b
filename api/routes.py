"""The /v1 routes: OpenAI's embeddings and models, and onnxvec's search (collections: api/collections.py).

Each handler only translates between HTTP and the core library; blocking database work runs in a
thread so the event loop keeps feeding the micro-batcher. Handlers write their JSON themselves (orjson,
numpy arrays as they are); `response_model` documents it. Each route declares the errors it can add;
api/app.py declares those every /v1 route shares (auth, limits).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from api.auth import reachable
from api.disconnect import unless_gone
from api.schemas import (
    EMBEDDING_HEADERS,
    EmbeddingRequest,
    EmbeddingResponse,
    Model,
    ModelList,
    SearchRequest,
    SearchResponse,
    error_responses,
)
from onnxvec.embedding.service import EmbeddingService, shorten, to_base64
from onnxvec.models.manifest import ModelManifest
from onnxvec.retrieval.fusion import Fusion
from onnxvec.retrieval.search import search_text

router = APIRouter(prefix="/v1")


class JSON(JSONResponse):
    """orjson, which writes numpy arrays directly: float embeddings never become Python lists.
    (A JSONResponse, so that FastAPI documents the routes' response models.)"""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _service(request: Request) -> EmbeddingService:
    return request.app.state.service


def _db(request: Request) -> Engine:
    return request.app.state.db


@router.post(
    "/embeddings",
    response_class=JSON,
    response_model=EmbeddingResponse,
    responses={200: {"headers": EMBEDDING_HEADERS}, **error_responses(400, 404, 413, 503)},
)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> JSON:
    """OpenAI's embeddings; each item also says how many tokens it used and whether it was cut."""
    work = _service(request).embed(body.model, body.input, truncate=body.truncate, owner=request.state.owner)
    batcher, result = await unless_gone(request, work)  # a client that left frees its queued inputs
    manifest = batcher.engine.manifest
    vectors = shorten(result.vectors, body.dimensions, manifest.normalize)
    encoded = result.encoded
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": to_base64(vector) if body.encoding_format == "base64" else vector,
            "tokens": tokens,
            "truncated": truncated,
        }
        for i, (vector, tokens, truncated) in enumerate(zip(vectors, encoded.tokens, encoded.truncated, strict=True))
    ]
    total = sum(encoded.tokens)
    metrics = request.app.state.metrics
    metrics.tokens.labels(manifest.name).inc(total)
    metrics.queue_wait.labels(manifest.name).observe(result.timing.queue_ms / 1000)
    timing = (
        f"queue;dur={result.timing.queue_ms:.2f}, tokenize;dur={result.tokenize_ms:.2f}, "
        f"inference;dur={result.timing.inference_ms:.2f}"
    )
    headers = {"Server-Timing": timing, "X-Truncated-Inputs": str(sum(encoded.truncated))}
    return JSON(
        {
            "object": "list",
            "data": data,
            "model": manifest.name,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        },
        headers=headers,
    )


def model_object(manifest: ModelManifest) -> dict[str, Any]:
    """OpenAI's model object, with what a client needs to use the model as extension fields."""
    fields = ("kind", "dims", "max_seq_length", "pooling", "normalize", "distance_metrics", "context_length")
    return {
        "id": manifest.name,
        "object": "model",
        "created": _timestamp(manifest.created_at),
        "owned_by": "onnxvec",
    } | {name: getattr(manifest, name) for name in fields}


def _timestamp(created_at: str) -> int:
    try:
        return int(datetime.fromisoformat(created_at).timestamp())
    except ValueError:
        return 0


@router.get("/models", response_class=JSON, response_model=ModelList)
async def list_models(request: Request) -> JSON:
    manifests = await asyncio.to_thread(_service(request).models.store.list)
    return JSON({"object": "list", "data": [model_object(m) for m in manifests]})


@router.get("/models/{model_id:path}", response_class=JSON, response_model=Model, responses=error_responses(404))
async def retrieve_model(model_id: Annotated[str, Path(examples=["all-MiniLM-L6-v2"])], request: Request) -> JSON:
    return JSON(model_object(await asyncio.to_thread(_service(request).models.store.get, model_id)))


@router.post(
    "/search", response_class=JSON, response_model=SearchResponse, responses=error_responses(400, 404, 413, 503)
)
async def search(body: SearchRequest, request: Request) -> JSON:
    """Top-k chunks of a collection for a query: by vector (embedded with the collection's own model),
    by full text, or both fused."""
    reachable(request, body.collection)
    settings = request.app.state.settings
    mode = body.mode or settings.search_mode
    result = await search_text(
        _db(request),
        _service(request),
        body.collection,
        body.query,
        body.k,
        filter=body.filter,
        ef_search=body.ef_search or settings.ef_search,
        mode=mode,
        fusion=Fusion.of(settings, body.vector_weight, body.text_weight, body.rrf_k),
        owner=request.state.owner,
        rerank=body.rerank,
        rerank_model=body.rerank_model,
    )
    reranked = result.rerank_scores or [None] * len(result.hits)
    data = [
        {
            "object": "search.result",
            "rank": rank,
            "score": hit.score,
            "distance": hit.distance,
            "document_id": hit.document_id,
            "external_id": hit.external_id,
            "source": hit.source,
            "chunk": hit.ordinal,
            "title": hit.title,
            "section": hit.section,
            "metadata": hit.metadata,
        }
        | ({"text": hit.text} if body.include_text else {})
        | ({"rerank_score": score} if score is not None else {})
        for rank, (hit, score) in enumerate(zip(result.hits, reranked, strict=True), start=1)
    ]
    collection = result.collection
    tokens = result.query_tokens + result.rerank_tokens
    return JSON(
        {
            "object": "list",
            "collection": collection.name,
            "model": collection.model,
            "metric": collection.metric,
            "version": collection.version,
            "mode": mode,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
