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


class PairIds(list[int]):
    """A (query, document) pair's ids as a cross-encoder takes them, with its segments (token type ids):
    the micro-batcher queues and batches it as any list of ids."""

    def __init__(self, ids: Sequence[int], type_ids: Sequence[int]) -> None:
        super().__init__(ids)
        self.type_ids = list(type_ids)


class TextTokenizer:
    """The model's tokenizer for embedding: no padding (batches pad), truncation to the model's max length.

    Texts are tokenized without special tokens and wrapped in them after truncation, so the count
    before truncation comes for free and chunks (already token ids) are wrapped the same way.
    """

    def __init__(self, path: Path, max_length: int) -> None:
        self.max_length = max_length
        self._tok = Tokenizer.from_file(str(path))
        padding = self._tok.padding or {}
        self.pad_id: int = padding.get("pad_id", self._tok.token_to_id("[PAD]") or 0)
        self._tok.no_padding()
        self._tok.no_truncation()
        self.vocab_size = self._tok.get_vocab_size()
        self._prefix, self._suffix = self._special_tokens()
        self.content_length = max_length - len(self._prefix) - len(self._suffix)

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the model's template puts before and after a text (e.g. [CLS] and [SEP])."""
        inner = self._tok.encode("a", add_special_tokens=False).ids
        full = self._tok.encode("a").ids
        at = next(i for i in range(len(full)) if full[i : i + len(inner)] == inner)
        return full[:at], full[at + len(inner) :]

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        special = len(self._prefix) + len(self._suffix)
        return Encoded(
            ids=[self.with_special_tokens(e.ids[: self.content_length]) for e in encodings],
            original_tokens=[len(e.ids) + special for e in encodings],
        )

    def encode_pairs(self, query: str, texts: Sequence[str]) -> Encoded:
        """(query, text) pairs in the model's pair template, each cut to max_length by cutting the text:
        the query is kept whole, unless it alone would take more than half of the pair, then it keeps
        that half (a query that leaves no room would score nothing)."""
        special = self._tok.num_special_tokens_to_add(True)
        query_enc = self._tok.encode(query, add_special_tokens=False)
        query_tokens = len(query_enc.ids)
        query_enc.truncate((self.max_length - special) // 2)
        room = max(self.max_length - special - len(query_enc.ids), 0)
        ids: list[list[int]] = []
        original: list[int] = []
        for text in self._tok.encode_batch(list(texts), add_special_tokens=False):
            original.append(special + query_tokens + len(text.ids))
            text.truncate(room)
            pair = self._tok.post_process(query_enc, text)
            ids.append(PairIds(pair.ids, pair.type_ids))
        return Encoded(ids=ids, original_tokens=original)

    def content_ids(self, text: str) -> list[int]:
        """A text's ids without special tokens (e.g. a model's passage prefix, put before a chunk's ids)."""
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def spans(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of a whole text, without special tokens: what chunking cuts."""
        encoding = self._tok.encode(text, add_special_tokens=False)
        return encoding.ids, encoding.offsets

    def with_special_tokens(self, ids: Sequence[int]) -> list[int]:
        """Ids as the model expects them; chunks (already ids) are embedded without tokenizing twice."""
        return [*self._prefix, *ids, *self._suffix]

    def truncate_ids(self, ids: Sequence[Sequence[int]]) -> Encoded:
        """Pre-tokenized input, used as given (no special tokens added), cut at max_length."""
        for seq in ids:
            if seq and (min(seq) < 0 or max(seq) >= self.vocab_size):
                raise ValueError(f"token ids must lie in [0, {self.vocab_size}) for this model")
        return Encoded(ids=[list(x[: self.max_length]) for x in ids], original_tokens=[len(x) for x in ids])
