"""Reciprocal rank fusion on hand-checked cases."""

from __future__ import annotations

import pytest

from onnxvec.config import Settings
from onnxvec.retrieval.fusion import Fusion, fuse
from onnxvec.storage.chunks import Hit


def _hit(chunk_id: int, score: float, distance: float | None) -> Hit:
    return Hit(chunk_id, chunk_id, f"doc-{chunk_id}", None, {}, 0, "", distance=distance, score=score)


VECTOR = [_hit(1, 0.9, 0.1), _hit(2, 0.8, 0.2), _hit(3, 0.7, 0.3)]  # a, b, c
TEXT = [_hit(3, 5.0, None), _hit(4, 2.0, None)]  # c, d


def test_equal_weights() -> None:
    """a: 1/61 = .016393; b: 1/62 = .016129; c: 1/63 + 1/61 = .032266; d: 1/62 (ties b, found after it)."""
    fused = fuse([(VECTOR, 1.0), (TEXT, 1.0)], k=60)
    assert [h.chunk_id for h in fused] == [3, 1, 2, 4]
    assert [h.score for h in fused] == pytest.approx([1 / 63 + 1 / 61, 1 / 61, 1 / 62, 1 / 62])
    assert fused[0].distance == 0.3 and fused[3].distance is None  # the vector leg's fields where it found it


def test_weights_and_k() -> None:
    """Text weighted 2: c 1/63 + 2/61 = .048660; d 2/62 = .032258; a .016393; b .016129."""
    assert [h.chunk_id for h in fuse([(VECTOR, 1.0), (TEXT, 2.0)], k=60)] == [3, 4, 1, 2]
    # k = 1: c 1/4 + 1/2 = .75, a 1/2, d 1/3, b 1/3 (b first: found first)
    fused = fuse([(VECTOR, 1.0), (TEXT, 1.0)], k=1)
    assert [h.chunk_id for h in fused] == [3, 1, 2, 4] and fused[0].score == pytest.approx(0.75)


def test_an_empty_leg_leaves_the_other_in_order() -> None:
    assert [h.chunk_id for h in fuse([(VECTOR, 1.0), ([], 1.0)])] == [1, 2, 3]


def test_request_values_take_the_place_of_the_settings() -> None:
    settings = Settings(vector_weight=0.5, text_weight=2.0, rrf_k=10, hybrid_candidates=7)
    assert Fusion.of(settings) == Fusion(0.5, 2.0, 10, 7)
    assert Fusion.of(settings, vector_weight=0, k=60) == Fusion(0, 2.0, 60, 7)
