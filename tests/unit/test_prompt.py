"""Fitting a conversation and its sources into a context, and stop strings across tokens."""

from __future__ import annotations

import pytest

from onnxvec.chat.generate import StopMatcher
from onnxvec.chat.prompt import fit
from onnxvec.errors import PromptTooLong


def test_stop_matcher_holds_back_partial_stops() -> None:
    matcher = StopMatcher(["END", "xy"])
    assert matcher.feed("abc E") == "abc "  # "E" may begin "END"
    assert matcher.feed("N") == ""
    assert matcher.feed("D tail") == "" and matcher.stopped
    other = StopMatcher(["END"])
    assert other.feed("EN") == "" and other.feed("O") == "ENO" and other.flush() == ""
    assert StopMatcher([]).feed("anything") == "anything"


def test_fit_drops_history_then_sources() -> None:
    def count(messages: list) -> int:
        return sum(len(m["content"]) for m in messages)

    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "old" * 10},
        {"role": "user", "content": "Q"},
    ]
    kept = fit(messages, [], count, budget=5)
    assert [m["content"] for m in kept.messages] == ["S", "Q"] and kept.dropped_messages == 1
    with pytest.raises(PromptTooLong):
        fit([{"role": "user", "content": "x" * 50}], [], count, budget=10)


def test_fit_is_linear_in_a_long_history() -> None:
    """Each count renders and tokenizes the whole candidate: a 10,000-message history must not cost
    10,000 of them (one request ran for minutes)."""
    calls = []

    def count(messages: list) -> int:
        calls.append(len(messages))
        return sum(len(m["content"]) for m in messages)

    messages = [{"role": "user", "content": f"message {i:05d}"} for i in range(10_000)]
    kept = fit(messages, [], count, budget=10 * len("message 00000"))
    assert [m["content"] for m in kept.messages][-1] == "message 09999" and len(kept.messages) == 10
    assert kept.dropped_messages == 9_990 and len(calls) <= 20 and sum(calls) <= 10_000 * 15
