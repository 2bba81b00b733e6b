"""Chunking with the real tokenizer: chunks fit, overlap and cover the text."""

from __future__ import annotations

import pytest

from onnxvec.embedding.chunker import chunk_text
from onnxvec.embedding.engine import EmbeddingEngine

PARAGRAPHS = [
    " ".join(f"Paragraph {p} sentence {s} explains vector databases and internationalization." for s in range(7))
    for p in range(6)
]


@pytest.mark.parametrize(("size", "overlap"), [(40, 0), (64, 16), (128, 32), (254, 32)])
def test_chunks_fit_overlap_and_cover_the_text(embedder: EmbeddingEngine, size: int, overlap: int) -> None:
    text = "\n\n".join(PARAGRAPHS)
    chunks = chunk_text(text, embedder.tokenizer, size, overlap)
    ids, _ = embedder.tokenizer.spans(text)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert all(0 < len(c.token_ids) <= size for c in chunks)
    assert chunks[0].text == text[: len(chunks[0].text)] and text.endswith(chunks[-1].text)
    covered = sum(len(c.token_ids) for c in chunks)
    assert len(ids) <= covered <= len(ids) + overlap * (len(chunks) - 1)
    for before, after in zip(chunks, chunks[1:], strict=False):
        gap = text[text.index(before.text) + len(before.text) : text.index(after.text)]
        assert gap.strip() == ""  # nothing but whitespace is left out between chunks (or they overlap)
        assert before.text[-1] in ".ns" or size < 64  # cut at sentence ends when the window allows
    # each chunk re-tokenizes to its own ids: embedding the ids equals embedding the text
    assert [embedder.tokenizer.spans(c.text)[0] for c in chunks] == [c.token_ids for c in chunks]


def test_chunking_edge_cases(embedder: EmbeddingEngine) -> None:
    assert chunk_text("", embedder.tokenizer, 64, 8) == []
    assert chunk_text(" \n\t ", embedder.tokenizer, 64, 8) == []
    (only,) = chunk_text("short text", embedder.tokenizer, 64, 8)
    assert only.text == "short text" and only.ordinal == 0
    long_word = "x-" * 2000  # no whitespace at all: cut anyway, never loops
    assert len(chunk_text(long_word, embedder.tokenizer, 64, 8)) > 1
