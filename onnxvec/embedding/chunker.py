"""Token-aware chunking: sections packed into chunks of at most N tokens, long ones cut into windows.

A text's markdown heading lines ("## 20.4.1. Memory"; the HTML reader writes headings and definition
terms so) start sections, and a chunk starts at a section: consecutive small sections are packed
together up to the chunk size, and each chunk keeps the headings it sits under (its section), so a
hit can say where in its document it is. A section longer than a chunk, or a text without headings,
is cut into windows: the text is tokenized once, windows are cut on token positions, and each cut is
moved back to a paragraph break, line break, sentence end or word boundary in the window's second
half, so chunks read naturally and never split a word. Consecutive windows overlap by about
`overlap` tokens.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from dataclasses import dataclass

from onnxvec.embedding.tokenizer import TextTokenizer

# strongest first: the cut goes after the first of these found in the window's second half
BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ": ", ", ", " ")
HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*)$", re.MULTILINE)
TRAIL = " › "  # between the headings of a section, outermost first


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    token_ids: list[int]  # without special tokens
    section: str | None = None  # the headings it starts under, e.g. "20.4. Resource Consumption › 20.4.1. Memory"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def chunk_text(text: str, tokenizer: TextTokenizer, chunk_tokens: int, overlap: int) -> list[Chunk]:
    """Split a document into chunks at its sections; an empty or blank text gives no chunks."""
    size = max(1, min(chunk_tokens, tokenizer.content_length))
    overlap = min(max(overlap, 0), size // 2)
    ids, offsets = tokenizer.spans(text)
    starts = [begin for begin, _ in offsets]
    bounds = [(bisect_left(starts, at), trail) for at, trail in sections(text)] + [(len(ids), None)]
    pieces: list[tuple[int, int, str | None]] = []  # token ranges and their section
    packable = False  # whether the last piece may take the next section
    for (first, trail), (stop, _) in zip(bounds, bounds[1:], strict=False):
        if first == stop:
            continue
        if packable and stop - pieces[-1][0] <= size:
            pieces[-1] = (pieces[-1][0], stop, pieces[-1][2])
        elif stop - first <= size:
            pieces.append((first, stop, trail))
            packable = True
        else:  # a long section: windows, and the next section starts a chunk of its own
            pieces.extend((begin, end, trail) for begin, end in _windows(text, offsets, first, stop, size, overlap))
            packable = False
    return [
        Chunk(ordinal, text[offsets[begin][0] : offsets[end - 1][1]], ids[begin:end], trail)
        for ordinal, (begin, end, trail) in enumerate(pieces)
    ]


def sections(text: str) -> list[tuple[int, str | None]]:
    """Where each section starts (a character offset) and its trail of headings. Headings with no
    text between them open one section, named by the innermost; the text before the first heading
    is a section without one."""
    found: list[tuple[int, str | None]] = [(0, None)]
    trail: list[tuple[int, str]] = []
    body_from = 0  # where the text of the section last opened begins
    for match in HEADING.finditer(text):
        level = len(match.group(1))
        trail = [(outer, name) for outer, name in trail if outer < level] + [(level, match.group(2).strip())]
        name = TRAIL.join(name for _, name in trail)
        if len(found) > 1 and not text[body_from : match.start()].strip():
            found[-1] = (found[-1][0], name)  # no text since the last heading: the same section, deeper
        else:
            found.append((match.start(), name))
        body_from = match.end()
    return found


def _windows(
    text: str, offsets: list[tuple[int, int]], first: int, stop: int, size: int, overlap: int
) -> list[tuple[int, int]]:
    """Overlapping token windows over [first, stop), each cut at the strongest nearby boundary."""
    windows: list[tuple[int, int]] = []
    start = first
    while start < stop:
        end = min(start + size, stop)
        if end < stop:
            end = _cut_at_boundary(text, offsets, start, end)
        windows.append((start, end))
        if end == stop:
            break
        start = _word_start(text, offsets, max(end - overlap, start + 1), end)
    return windows


def _cut_at_boundary(text: str, offsets: list[tuple[int, int]], start: int, end: int) -> int:
    """The cut (a token index) after the strongest boundary in the second half of [start, end)."""
    lowest = start + (end - start) // 2
    for boundary in BOUNDARIES:
        for cut in range(end, lowest, -1):
            # the last token kept and the gap after it, e.g. "." + " " or "word" + "\n\n"
            if boundary in text[offsets[cut - 1][0] : offsets[cut][0]]:
                return cut
    return end


def _word_start(text: str, offsets: list[tuple[int, int]], start: int, limit: int) -> int:
    """Move a window start forward to the first token that begins a word (not a ##subword)."""
    for index in range(start, limit):
        begin = offsets[index][0]
        if begin == 0 or not text[begin - 1].isalnum() or not text[begin].isalnum():
            return index
    return start
