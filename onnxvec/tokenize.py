"""Text to token ids with the model's own tokenizer.json, truncated at the model's max length.

Truncation is reported, never silent: every input carries the number of tokens it was given to the
model and the number it had before truncation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer


@dataclass(frozen=True)
class Encoded:
    """Token ids of a list of inputs, with per-input counts and truncation flags."""

    ids: list[list[int]]
    original_tokens: list[int]

    @property
    def tokens(self) -> list[int]:
        return [len(ids) for ids in self.ids]

    @property
    def truncated(self) -> list[bool]:
        return [orig > len(ids) for ids, orig in zip(self.ids, self.original_tokens, strict=True)]


class TextTokenizer:
    """A `tokenizers` tokenizer set up for embedding: no padding (batches pad), truncation at max_length."""

    def __init__(self, path: Path, max_length: int) -> None:
        self.max_length = max_length
        self._tok = Tokenizer.from_file(str(path))
        padding = self._tok.padding or {}
        self.pad_id: int = padding.get("pad_id", self._tok.token_to_id("[PAD]") or 0)
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        self._special = self._tok.num_special_tokens_to_add(is_pair=False)

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tok.encode_batch(list(texts))
        # with stride 0 each overflow piece repeats the special tokens and nothing else
        original = [len(e.ids) + sum(len(o.ids) - self._special for o in e.overflowing) for e in encodings]
        return Encoded(ids=[e.ids for e in encodings], original_tokens=original)

    def truncate_ids(self, ids: Sequence[Sequence[int]]) -> Encoded:
        """Pre-tokenized input, used as given (no special tokens added), cut at max_length."""
        return Encoded(ids=[list(x[: self.max_length]) for x in ids], original_tokens=[len(x) for x in ids])
