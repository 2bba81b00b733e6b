"""Which of the prompt's numbered sources an answer actually uses.

Small models rarely write the [n] markers they are asked for, so listing every source put in the
prompt as a citation claims more than the answer does. A source counts as used when the answer names
it with a marker, or when the answer repeats a run of its words (OVERLAP_WORDS in a row): quoting a
passage is how small models use it. Evidence is reported with each citation, so a client can trust
markers and overlap differently.
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


def _runs(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + OVERLAP_WORDS]) for i in range(len(words) - OVERLAP_WORDS + 1)}


def used_sources(answers: Sequence[str], sources: Sequence[Hit]) -> dict[int, Evidence]:
    """Source number (from 1) → how the answers show they use it; sources no answer uses are absent.
    A marker outside 1..len(sources) names nothing and is ignored."""
    used: dict[int, Evidence] = {}
    named = set().union(*(markers(answer) for answer in answers))
    for number in sorted(named):
        if 1 <= number <= len(sources):
            used[number] = "marker"
    quoted = set().union(*(_runs(answer) for answer in answers))
    for number, hit in enumerate(sources, start=1):
        if number not in used and quoted & _runs(hit.text):
            used[number] = "overlap"
    return dict(sorted(used.items()))
