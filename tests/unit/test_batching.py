"""Token-budget batching and pooling: pure logic."""

from __future__ import annotations

import numpy as np
import pytest

from onnxvec.embedding.batching import MAX_PADDING, PADDING_FREE_TOKENS, plan_batches
from onnxvec.embedding.engine import l2_normalize, pool


@pytest.mark.parametrize("seed", range(5))
def test_batches_cover_every_input_once_within_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 300, size=200)]
    batches = plan_batches(lengths, token_budget=2048, max_batch_size=32)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert len(batch) <= 32 and padded <= 2048
        assert padded <= PADDING_FREE_TOKENS or padded <= (1 + MAX_PADDING) * sum(lengths[i] for i in batch)


def test_short_and_long_inputs_are_not_padded_together() -> None:
    lengths = [8] * 12 + [256] * 4
    assert plan_batches(lengths, token_budget=8192, max_batch_size=64) == [list(range(12)), [12, 13, 14, 15]]


def test_an_input_over_budget_gets_its_own_batch() -> None:
    assert plan_batches([5, 500, 5], token_budget=100, max_batch_size=8) == [[0, 2], [1]]


def test_batches_are_length_sorted() -> None:
    assert plan_batches([30, 10, 20, 10], token_budget=40, max_batch_size=8) == [[1, 3], [2], [0]]
    assert plan_batches([30, 10, 20, 10], token_budget=60, max_batch_size=8) == [[1, 3, 2], [0]]


def test_pooling_modes_ignore_padding() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])
    mask = np.array([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(hidden, mask, "last").tolist() == [[3.0, 4.0]]
    with pytest.raises(ValueError):
        pool(hidden, mask, "median")


def test_l2_normalize() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.tolist() == [[0.6, 0.8], [0.0, 0.0]]
