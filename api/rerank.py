"""Reranking over HTTP: POST /v1/rerank as Cohere's and Jina's clients call it, and POST /rerank as
Hugging Face TEI's do. Both score (query, document) pairs with a cross-encoder through the shared
scheduler (onnxvec/retrieval/rerank.py) and answer most relevant first."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from api.disconnect import unless_gone
from api.rerank_schemas import RerankRequest, RerankResponse, TeiRank, TeiRerankRequest
from api.routes import JSON
from api.schemas import error_responses
from onnxvec.retrieval.rerank import Ranking, rerank

router = APIRouter()
ERRORS = error_responses(400, 404, 413, 503)


async def _rank(request: Request, model: str | None, query: str, texts: list[str], **options) -> Ranking:
    service = request.app.state.service
    work = rerank(service, model, query, texts, owner=request.state.owner, **options)
    ranking = await unless_gone(request, work)  # a client that left frees its queued pairs
    request.app.state.metrics.tokens.labels(ranking.model).inc(sum(ranking.tokens))
    return ranking


def _headers(ranking: Ranking) -> dict[str, str]:
    return {"X-Truncated-Inputs": str(sum(ranking.truncated))}


@router.post("/v1/rerank", response_class=JSON, response_model=RerankResponse, responses=ERRORS)
async def rerank_v1(body: RerankRequest, request: Request) -> JSON:
    """Cohere's and Jina's rerank: documents by relevance to the query, most relevant first."""
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    ranking = await _rank(request, body.model, body.query, texts, top_n=body.top_n, truncate=body.truncate)
    scores = ranking.scores
    results = [
        {"index": i, "relevance_score": float(scores[i])}
        | ({"document": {"text": texts[i]}} if body.return_documents else {})
        for i in ranking.order
    ]
    tokens = sum(ranking.tokens)
    return JSON(
        {
            "id": str(uuid.uuid4()),
            "model": ranking.model,
            "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "meta": {"tokens": {"input_tokens": tokens, "output_tokens": 0}},
        },
        headers=_headers(ranking),
    )


@router.post("/rerank", response_class=JSON, response_model=list[TeiRank], responses=ERRORS)
async def rerank_tei(body: TeiRerankRequest, request: Request) -> JSON:
    """Hugging Face TEI's rerank: scores (sigmoid, or the logits with raw_scores), most relevant first."""
    ranking = await _rank(request, body.model, body.query, body.texts, truncate=body.truncate, param="texts")
    scores = ranking.logits if body.raw_scores else ranking.scores
    return JSON(
        [
            {"index": i, "score": float(scores[i])} | ({"text": body.texts[i]} if body.return_text else {})
            for i in ranking.order
        ],
        headers=_headers(ranking),
    )
