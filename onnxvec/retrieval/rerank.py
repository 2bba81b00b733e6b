"""Reranking: a cross-encoder re-scores (query, document) pairs, read together, and the documents come
back most relevant first. Used by /v1/rerank and /rerank with the client's documents, and by search
(and so chat retrieval) with `rerank: true`: the top candidates of the vector search are re-scored and
the best k kept. The pairs go through the embedding service's scheduler (onnxvec/embedding/service.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnxvec.config import Settings
from onnxvec.embedding.crossencoder import sigmoid
from onnxvec.embedding.service import EmbeddingService
from onnxvec.storage.chunks import MAX_K


@dataclass(frozen=True)
class Ranking:
    """Documents by relevance: `order` holds their indices, most relevant first (top_n of them)."""

    model: str
    order: list[int]
    logits: np.ndarray  # one per document, in the request's order
    tokens: list[int]  # tokens of each pair the model read
    truncated: list[bool]

    @property
    def scores(self) -> np.ndarray:
        """Relevance in [0, 1]: the sigmoid of each logit."""
        return sigmoid(self.logits)


async def rerank(
    service: EmbeddingService,
    model: str | None,
    query: str,
    documents: Sequence[str],
    *,
    top_n: int | None = None,
    truncate: bool = True,
    owner: str = "",
    param: str = "documents",
) -> Ranking:
    """Score every (query, document) pair with the reranker (the configured one when None) and rank
    them; ties keep the documents' order."""
    batcher, result = await service.score_pairs(model, query, documents, truncate=truncate, owner=owner, param=param)
    logits = result.vectors[:, 0]
    order = np.argsort(-logits, kind="stable")[:top_n].tolist()
    encoded = result.encoded
    return Ranking(batcher.engine.manifest.name, order, logits, encoded.tokens, encoded.truncated)


def candidates(settings: Settings, k: int) -> int:
    """How many vector-search hits `rerank: true` re-scores to keep k."""
    wanted = max(k * settings.rerank_candidates, settings.rerank_min_candidates)
    return max(k, min(wanted, MAX_K, settings.max_rerank_documents))
