"""Fitting a conversation and its sources into a context, stop strings across tokens, the loop guard."""

from __future__ import annotations

from dataclasses import replace

import pytest

from onnxvec.chat.generate import LoopGuard, Sampling, StopMatcher
from onnxvec.chat.prompt import INSTRUCTIONS, fit, label, with_context
from onnxvec.chat.service import ANSWER_FIRST, RAG_MAX_TOKENS, rag_sampling
from onnxvec.errors import PromptTooLong
from onnxvec.storage.chunks import Hit


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


def _hit(number: int, text: str) -> Hit:
    return Hit(number, number, f"doc-{number}", f"page-{number}.html", {}, 0, text, 0.2, 0.8)


def test_sources_come_right_before_the_question() -> None:
    hits = [_hit(1, "Alpha is first."), _hit(2, "  Beta is second.\n")]
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Which is first?"}]
    system, user = with_context(messages, hits)
    assert system == messages[0]  # the client's system message is left as it was
    assert user["role"] == "user" and user["content"] == (
        "Sources:\n[1] (page-1.html) Alpha is first.\n[2] (page-2.html) Beta is second.\n\n"
        f"{INSTRUCTIONS}\n\nQuestion: Which is first?"
    )
    assert with_context(messages, []) == messages


def test_a_source_is_named_by_its_title_and_section_when_it_has_them() -> None:
    plain = _hit(1, "text")
    assert label(plain) == "page-1.html"
    assert label(replace(plain, source=None)) == "doc-1"
    titled = replace(plain, title="VACUUM", section="Description")
    assert label(titled) == "VACUUM › Description"
    assert label(replace(titled, section="VACUUM › Notes")) == "VACUUM › Notes"  # the trail starts with it
    assert label(replace(plain, title="VACUUM")) == "VACUUM"


def test_sources_go_to_the_system_message_when_the_user_did_not_speak_last() -> None:
    hits = [_hit(1, "Alpha is first.")]
    ending = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "The answer is"}]
    first, *rest = with_context(ending, hits)
    assert first["role"] == "system" and "[1] (page-1.html) Alpha is first." in first["content"] and rest == ending
    with_system = with_context([{"role": "system", "content": "Be kind."}, *ending], hits)
    assert with_system[0]["content"].startswith("Be kind.\n\nSources:\n[1]") and with_system[1:] == ending


def test_fit_drops_the_lowest_ranked_sources_and_keeps_the_question() -> None:
    hits = [_hit(n, "word " * 20) for n in range(1, 5)]
    messages = [{"role": "user", "content": "old"}, {"role": "assistant", "content": "reply"}]
    messages.append({"role": "user", "content": "the question"})

    def count(candidate: list) -> int:
        return sum(len(m["content"]) for m in candidate)

    budget = count(with_context(messages[2:], hits[:2]))
    kept = fit(messages, hits, count, budget)
    assert kept.sources == hits[:2] and kept.dropped_messages == 2
    assert kept.messages[-1]["content"].endswith("Question: the question")


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


def _first_loop(tokens: list[int]) -> int | None:
    """The 1-based position at which the loop guard stops these tokens, if it does."""
    guard = LoopGuard()
    return next((i for i, token in enumerate(tokens, start=1) if guard.looping(token)), None)


def test_the_loop_guard_stops_a_sentence_repeated_to_the_limit() -> None:
    intro = list(range(100, 130))
    sentence = [7, 8, 9, 10, 11]  # "So, a single table is ..."
    assert _first_loop(intro + sentence * 3) == 30 + 15  # the third copy completes the loop
    assert _first_loop(intro + sentence * 2 + [99]) is None  # twice is not yet a loop for a short run
    paragraph = list(range(200, 220))  # 20 tokens: twice back to back is a loop already
    assert _first_loop(intro + paragraph * 2) == 30 + 40
    assert _first_loop([5] * 11) is None and _first_loop([5] * 12) == 12


def test_the_loop_guard_lets_ordinary_text_through() -> None:
    counting = [t for n in range(60) for t in (n, 3, 4)]  # "1, 2, 3, ...": a shape repeats, not its tokens
    assert _first_loop(counting) is None
    rows = [t for n in range(40) for t in (50, 51, n, 52)]  # list rows that share a prefix
    assert _first_loop(rows) is None


def test_an_answer_from_sources_gets_the_rag_defaults_where_the_request_left_them_open() -> None:
    defaults = rag_sampling(Sampling())
    assert defaults.loop_guard and defaults.max_tokens == RAG_MAX_TOKENS and defaults.regex == ANSWER_FIRST
    assert rag_sampling(Sampling(json_schema="{}")).regex is None  # the schema asked for is the guide
    asked = rag_sampling(Sampling(max_tokens=10, repetition_penalty=1.3, temperature=0.5))
    assert (asked.max_tokens, asked.repetition_penalty, asked.temperature, asked.loop_guard) == (10, 1.3, 0.5, True)
    assert not Sampling().loop_guard  # a plain chat, without sources, is generated as asked
