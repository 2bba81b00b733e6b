"""Token-budget batching: group inputs of similar length so padding, not input count, bounds a batch."""

from __future__ import annotations

from collections.abc import Sequence

# A batch may carry at most this much padding relative to its real tokens, once it is past
# PADDING_FREE_TOKENS padded tokens (below that, one bigger forward beats two small ones).
MAX_PADDING = 0.25
PADDING_FREE_TOKENS = 512


def plan_batches(
    lengths: Sequence[int], token_budget: int, max_batch_size: int, padding_free_tokens: int = PADDING_FREE_TOKENS
) -> list[list[int]]:
    """Input indices grouped into batches whose padded size (count × longest) fits the token budget.

    Inputs are sorted by length, and a batch is closed early when the next input would make it
    mostly padding: a small request mixing short and long texts then runs as two cheap forwards
    instead of one padded to the longest (single-threaded forwards gain from this even on small
    batches: they pass padding_free_tokens=0). An input longer than the budget on its own still gets a
    batch of one: the budget bounds memory, it never refuses work.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        longest = max(lengths[index], 1)  # ascending order: this input is the batch's longest
        padded = (len(current) + 1) * longest
        too_padded = padded > padding_free_tokens and padded > (1 + MAX_PADDING) * (real + longest)
        if current and (padded > token_budget or len(current) >= max_batch_size or too_padded):
            batches.append(current)
            current, real = [], 0
        current.append(index)
        real += longest
    if current:
        batches.append(current)
    return batches
