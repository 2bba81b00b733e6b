"""Semantic search for a text query: embedded with the collection's own model (and its query
prefix), then the collection's ANN scan with the metadata filter inside it; with `rerank`, more
candidates are scanned and a cross-encoder keeps the best k (onnxvec/retrieval/rerank.py).

Used by the HTTP search endpoint and by retrieval for chat; blocking database work runs on threads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from onnxvec.config import default
from onnxvec.embedding.service import EmbeddingService
from onnxvec.errors import InvalidRequest
from onnxvec.retrieval import rerank as reranking
from onnxvec.storage import chunks, collections
from onnxvec.values import invalid_unicode


@dataclass(frozen=True)
class SearchResult:
    collection: collections.Collection
    hits: list[chunks.Hit]
    query_tokens: int
    rerank_scores: list[float] | None = None  # the reranker's relevance of each hit, when reranked
    rerank_tokens: int = 0


async def search_text(
    db: Engine,
    embeddings: EmbeddingService,
    collection: str,
    query: str,
    k: int = 10,
    *,
    filter: dict[str, Any] | None = None,
    ef_search: int = default("ef_search"),
    owner: str = "",
    rerank: bool = False,
    rerank_model: str | None = None,
) -> SearchResult:
    """CollectionNotFound, StoreError (bad filter) and the embedding service's errors pass through.
    The query waits for the model in `owner`'s turns, as any embeddings request of that client does.
    With `rerank` (or a `rerank_model`: the configured reranker when None), the top candidates are
    re-scored by the reranker, in the same turns, and the best k kept in its order."""
    if invalid_unicode(query):
        raise InvalidRequest("'query' is not valid Unicode (an unpaired surrogate).", "query")
    found = await asyncio.to_thread(find_collection, db, collection)
    manifest = embeddings.manifest(found.model)
    _, result = await embeddings.embed(manifest.name, query, prefix=manifest.query_prefix, owner=owner)
    reranked = rerank or rerank_model is not None
    if reranked:  # no reranker (or a model of another kind) is refused even when nothing is found
        embeddings.manifest(rerank_model, "reranker")
    depth = reranking.candidates(embeddings.settings, k) if reranked else k
    hits = await asyncio.to_thread(_search, db, found, result.vectors[0], depth, filter, ef_search)
    if not reranked or not hits:
        return SearchResult(found, hits, result.encoded.tokens[0])
    ranking = await reranking.rerank(embeddings, rerank_model, query, [h.text for h in hits], top_n=k, owner=owner)
    scores = ranking.scores
    kept = [hits[i] for i in ranking.order]
    return SearchResult(
        found, kept, result.encoded.tokens[0], [float(scores[i]) for i in ranking.order], sum(ranking.tokens)
    )


def find_collection(db: Engine, name: str) -> collections.Collection:
    """The named collection; CollectionNotFound (a 404) when there is none."""
    with db.connect() as conn:
        return collections.get_collection(conn, name)


def _search(
    db: Engine, collection: collections.Collection, vector: np.ndarray, k: int, filter: dict | None, ef_search: int
) -> list[chunks.Hit]:
    with db.begin() as conn:  # SET LOCAL of the search settings needs a transaction
        return chunks.search(conn, collection, vector, k, filter=filter, ef_search=ef_search)
