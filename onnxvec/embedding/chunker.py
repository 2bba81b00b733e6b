"""Token-aware chunking: windows of at most N tokens, cut at the strongest nearby text boundary.

The text is tokenized once; windows are cut on token positions, and each cut is moved back to a
paragraph break, line break, sentence end or word boundary in the window's second half, so chunks
read naturally and never split a word. Consecutive chunks overlap by about `overlap` tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from onnxvec.embedding.tokenizer import TextTokenizer

# strongest first: the cut goes after the first of these found in the window's second half
BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ": ", ", ", " ")


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    token_ids: list[int]  # without special tokens

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def chunk_text(text: str, tokenizer: TextTokenizer, chunk_tokens: int, overlap: int) -> list[Chunk]:
    """Split a document into overlapping token windows; an empty or blank text gives no chunks."""
    size = max(1, min(chunk_tokens, tokenizer.content_length))
    overlap = min(max(overlap, 0), size // 2)
    ids, offsets = tokenizer.spans(text)
    chunks: list[Chunk] = []
    start = 0
    while start < len(ids):
        end = min(start + size, len(ids))
        if end < len(ids):
            end = _cut_at_boundary(text, offsets, start, end)
        piece = text[offsets[start][0] : offsets[end - 1][1]]
        chunks.append(Chunk(len(chunks), piece, ids[start:end]))
        if end == len(ids):
            break
        start = _word_start(text, offsets, max(end - overlap, start + 1), end)
    return chunks


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
