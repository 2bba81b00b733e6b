"""Search for a text query in one of three modes: `vector` (the query embedded with the collection's
own model and query prefix, then the collection's ANN scan), `text` (Postgres full text in the
collection's language) or `hybrid` (both legs, fused by reciprocal rank). The metadata filter is inside
each leg's query, so a fused result never holds a filtered-out chunk nor lacks one a leg found. With
`rerank`, more candidates are found and a cross-encoder keeps the best k (onnxvec/retrieval/rerank.py).

Used by the HTTP search endpoint and by retrieval for chat; blocking database work runs on threads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from onnxvec.config import SEARCH_MODES, SearchMode, default
from onnxvec.embedding.service import EmbeddingService
from onnxvec.errors import InvalidRequest
from onnxvec.retrieval import rerank as reranking
from onnxvec.retrieval.fusion import Fusion, fuse
from onnxvec.storage import chunks, collections
from onnxvec.values import invalid_unicode


@dataclass(frozen=True)
class SearchResult:
    collection: collections.Collection
    hits: list[chunks.Hit]
    query_tokens: int  # 0 in text mode: nothing is embedded
    rerank_scores: list[float] | None = None  # the reranker's relevance of each hit, when reranked
    rerank_tokens: int = 0


async def search_text(
    db: Engine,
    embeddings: EmbeddingService,
    collection: str,
    query: str,
    k: int = 10,
    *,
    mode: SearchMode,
    fusion: Fusion,
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
    if mode not in SEARCH_MODES:
        raise InvalidRequest(f"'mode' is one of {', '.join(SEARCH_MODES)}, not {mode!r}.", "mode")
    found = await asyncio.to_thread(find_collection, db, collection)
    reranked = rerank or rerank_model is not None
    if reranked:  # no reranker (or a model of another kind) is refused even when nothing is found
        embeddings.manifest(rerank_model, "reranker")
    depth = reranking.candidates(embeddings.settings, k) if reranked else k
    vector, query_tokens = None, 0
    if mode != "text":
        manifest = embeddings.manifest(found.model)
        _, result = await embeddings.embed(manifest.name, query, prefix=manifest.query_prefix, owner=owner)
        vector, query_tokens = result.vectors[0], result.encoded.tokens[0]
    text_query = query if mode != "vector" else None
    hits = await asyncio.to_thread(_search, db, found, text_query, vector, depth, filter, ef_search, fusion)
    if not reranked or not hits:
        return SearchResult(found, hits, query_tokens)
    ranking = await reranking.rerank(embeddings, rerank_model, query, [h.text for h in hits], top_n=k, owner=owner)
    kept = [hits[i] for i in ranking.order]
    scores = [float(ranking.scores[i]) for i in ranking.order]
    return SearchResult(found, kept, query_tokens, scores, sum(ranking.tokens))


def find_collection(db: Engine, name: str) -> collections.Collection:
    """The named collection; CollectionNotFound (a 404) when there is none."""
    with db.connect() as conn:
        return collections.get_collection(conn, name)


def _search(
    db: Engine,
    collection: collections.Collection,
    query: str | None,
    vector: np.ndarray | None,
    k: int,
    filter: dict | None,
    ef_search: int,
    fusion: Fusion,
) -> list[chunks.Hit]:
    """The vector leg (with a vector), the text leg (with a query), or both fused, in one transaction."""
    with db.begin() as conn:  # SET LOCAL of the search settings needs a transaction
        if query is None:
            return chunks.search(conn, collection, vector, k, filter=filter, ef_search=ef_search)
        if vector is None:
            return chunks.text_search(conn, collection, query, k, filter=filter)
        depth = min(max(k, fusion.candidates), chunks.MAX_K)
        by_vector = chunks.search(conn, collection, vector, depth, filter=filter, ef_search=ef_search)
        by_text = chunks.text_search(conn, collection, query, depth, filter=filter)
    return fuse([(by_vector, fusion.vector_weight), (by_text, fusion.text_weight)], fusion.k)[:k]
