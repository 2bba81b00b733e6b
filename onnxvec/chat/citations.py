"""Which of the prompt's numbered sources an answer actually uses.

Small models rarely write the [n] markers a citation would need, so listing every source put in the
prompt as a citation claims more than the answer does. A source counts as used when the answer names
it with a marker, or when the answer overlaps it: repeats a run of its words (OVERLAP_WORDS in a row),
or most of the answer's own words (those not in the question, nor common) are in it, as when an answer
restates a fact in other order ("Zorbulax serves 250 clients" from "...; it defaults to 250"). The
evidence is reported with each citation, so a client can trust markers and overlap differently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from onnxvec.storage.chunks import Hit

OVERLAP_WORDS = 5  # shorter runs ("the name of the") are shared by unrelated passages
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"\w+")

Evidence = Literal["marker", "overlap"]


def markers(answer: str) -> set[int]:
    """The source numbers the answer names: [2], [1, 3] and [1][2] alike."""
    return {int(number) for group in _MARKER.findall(answer) for number in group.split(",")}


_COMMON = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "can", "for", "from", "has", "have", "in", "is", "it"}
    | {"its", "not", "of", "on", "or", "that", "the", "this", "to", "was", "which", "with", "you", "your"}
    | {"based", "information", "provided", "sources", "source", "according"}  # how small models begin
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _runs(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + OVERLAP_WORDS]) for i in range(len(words) - OVERLAP_WORDS + 1)}


def _overlaps(answer: list[str], own: set[str], source: list[str]) -> bool:
    """The answer repeats a run of the source's words, or at least two of the answer's own words and
    most of them are the source's."""
    if _runs(answer) & _runs(source):
        return True
    shared = own & set(source)
    return len(shared) >= 2 and 2 * len(shared) >= len(own)


def used_sources(answers: Sequence[str], sources: Sequence[Hit], question: str = "") -> dict[int, Evidence]:
    """Source number (from 1) → how the answers show they use it; sources no answer uses are absent.
    A marker outside 1..len(sources) names nothing and is ignored."""
    used: dict[int, Evidence] = {}
    named = set().union(*(markers(answer) for answer in answers))
    for number in sorted(named):
        if 1 <= number <= len(sources):
            used[number] = "marker"
    asked = set(_words(question)) | _COMMON
    for answer in map(_words, answers):
        own = set(answer) - asked
        for number, hit in enumerate(sources, start=1):
            if number not in used and _overlaps(answer, own, _words(hit.text)):
                used[number] = "overlap"
    return dict(sorted(used.items()))
