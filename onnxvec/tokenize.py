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
        self._plain = Tokenizer.from_file(str(path))  # whole texts, for chunking: no truncation, no padding
        self._plain.no_padding()
        self._plain.no_truncation()
        self._prefix, self._suffix = self._special_tokens()

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the model's template puts before and after a text (e.g. [CLS] and [SEP])."""
        inner = self._plain.encode("a", add_special_tokens=False).ids
        full = self._plain.encode("a").ids
        at = next(i for i in range(len(full)) if full[i : i + len(inner)] == inner)
        return full[:at], full[at + len(inner) :]

    @property
    def content_length(self) -> int:
        """Tokens of text that fit in one input beside the special tokens."""
        return self.max_length - self._special

    def spans(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of a whole text, without special tokens: what chunking cuts."""
        encoding = self._plain.encode(text, add_special_tokens=False)
        return encoding.ids, encoding.offsets

    def with_special_tokens(self, ids: Sequence[int]) -> list[int]:
        """A chunk's ids as the model expects them, so chunks are embedded without tokenizing twice."""
        return [*self._prefix, *ids, *self._suffix]

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tok.encode_batch(list(texts))
        # with stride 0 each overflow piece repeats the special tokens and nothing else
        original = [len(e.ids) + sum(len(o.ids) - self._special for o in e.overflowing) for e in encodings]
        return Encoded(ids=[e.ids for e in encodings], original_tokens=original)

    def truncate_ids(self, ids: Sequence[Sequence[int]]) -> Encoded:
        """Pre-tokenized input, used as given (no special tokens added), cut at max_length."""
        return Encoded(ids=[list(x[: self.max_length]) for x in ids], original_tokens=[len(x) for x in ids])
