"""Token-budget batching: group inputs of similar length so padding, not input count, bounds a batch."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int) -> list[list[int]]:
    """Input indices grouped into batches whose padded size (count × longest) fits the token budget.

    Inputs are sorted by length first, so each batch pads little. An input longer than the budget
    on its own still gets a batch of one: the budget bounds memory, it never refuses work.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = max(lengths[index], 1)  # ascending order: this input is the batch's longest
        if current and ((len(current) + 1) * longest > token_budget or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
