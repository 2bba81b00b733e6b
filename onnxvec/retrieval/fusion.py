"""Reciprocal rank fusion of ranked hit lists (the vector and full-text legs of a hybrid search).

Ranks, not scores, are fused: a cosine similarity and a ts_rank_cd are on scales nothing relates.
A chunk at rank r (from 1) of a leg weighted w gets w / (k + r) from it, summed over the legs that
found it (Cormack et al., 2009: k = 60). A chunk found by one leg only keeps that leg's share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from onnxvec.config import Settings, default
from onnxvec.storage.chunks import Hit


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses its legs, and how deep each leg ranks before fusion."""

    vector_weight: float = default("vector_weight")
    text_weight: float = default("text_weight")
    k: int = default("rrf_k")
    candidates: int = default("hybrid_candidates")

    @classmethod
    def of(
        cls,
        settings: Settings,
        vector_weight: float | None = None,
        text_weight: float | None = None,
        k: int | None = None,
    ) -> Fusion:
        """The settings' fusion, with what a request sets in their place."""
        return cls(
            settings.vector_weight if vector_weight is None else vector_weight,
            settings.text_weight if text_weight is None else text_weight,
            settings.rrf_k if k is None else k,
            settings.hybrid_candidates,
        )


def fuse(legs: Sequence[tuple[Sequence[Hit], float]], k: int = default("rrf_k")) -> list[Hit]:
    """Hits of every (ranked hits, weight) leg by fused score, best first, with that score as their
    own. A hit keeps the fields of the first leg that found it (the vector leg's distance); ties keep
    the order in which the legs found them."""
    fused: dict[int, Hit] = {}
    scores: dict[int, float] = {}
    for hits, weight in legs:
        for rank, hit in enumerate(hits, start=1):
            fused.setdefault(hit.chunk_id, hit)
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (k + rank)
    ranked = sorted(fused, key=lambda chunk_id: -scores[chunk_id])
    return [dataclasses.replace(fused[chunk_id], score=scores[chunk_id]) for chunk_id in ranked]
