"""Chunking with the real tokenizer: chunks fit, overlap and cover the text, and start at sections."""

from __future__ import annotations

import pytest

from onnxvec.embedding.chunker import TRAIL, chunk_text
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.sources.html import read_html
from tests.unit.test_html import PAGE

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


def test_chunks_start_at_headings_and_definition_terms_with_their_section(embedder: EmbeddingEngine) -> None:
    text = read_html(PAGE).text
    chunks = chunk_text(text, embedder.tokenizer, 56, 8)
    memory = f"20.4. Resource Consumption{TRAIL}20.4.1. Memory"
    assert [(c.text.splitlines()[0], c.section) for c in chunks] == [
        # headings with no text between them open one section, named by the innermost
        ("## 20.4. Resource Consumption", f"{memory}{TRAIL}shared_buffers (integer)"),
        ("#### work_mem (integer)", f"{memory}{TRAIL}work_mem (integer)"),
        ("### 20.4.2. Disk", f"20.4. Resource Consumption{TRAIL}20.4.2. Disk"),
        ("mem = '64MB';", f"20.4. Resource Consumption{TRAIL}20.4.2. Disk"),  # a long section: windows
    ]
    assert chunks[1].text.endswith("A sort may use several times this much.")
    assert all(len(c.token_ids) <= 56 for c in chunks)
    # a chunk big enough for the page packs every section into one, under the first
    (whole,) = chunk_text(text, embedder.tokenizer, 254, 32)
    assert whole.text == text and whole.section == chunks[0].section


def test_text_before_the_first_heading_has_no_section(embedder: EmbeddingEngine) -> None:
    text = "Preface words here.\n# Part one\nOne. " + "Long section words. " * 30 + "\n## Part two\nTwo."
    chunks = chunk_text(text, embedder.tokenizer, 32, 4)
    assert chunks[0].text == "Preface words here." and chunks[0].section is None
    assert {c.section for c in chunks[1:-1]} == {"Part one"} and len(chunks) > 3  # windows inside a long section
    assert chunks[-1].text == "## Part two\nTwo." and chunks[-1].section == f"Part one{TRAIL}Part two"
    (plain,) = chunk_text("#hashtag is no heading\n#\nnor is this", embedder.tokenizer, 32, 4)
    assert plain.section is None and plain.text == "#hashtag is no heading\n#\nnor is this"
