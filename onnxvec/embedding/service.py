"""Embedding requests as OpenAI defines them, and rerankers' pair scores, over loaded models and their
micro-batchers (one scheduler for both).

The HTTP layer hands over the request's fields; this module resolves the model, tokenizes the
input forms OpenAI allows (strings or token ids) or a reranker's (query, document) pairs, runs them
through the model's micro-batcher, and shortens/encodes the vectors. Errors are `InvalidRequest`
(the client's fault, with the parameter) or `ModelNotFound`, which the HTTP layer turns into 400 / 404.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from onnxvec.config import Settings
from onnxvec.embedding import openai_tokens
from onnxvec.embedding.engine import EmbeddingEngine, l2_normalize
from onnxvec.embedding.microbatch import BatchTiming, MicroBatcher
from onnxvec.embedding.registry import EngineKind, EngineRegistry
from onnxvec.embedding.tokenizer import Encoded
from onnxvec.errors import InvalidRequest
from onnxvec.models.manifest import ModelManifest
from onnxvec.values import invalid_unicode

# Up to this many characters (or token ids) a request is tokenized on the event loop: tens of
# microseconds, less than the hop to a worker thread costs.
INLINE_TOKENIZE = 2000

EmbeddingInput = str | list[str] | list[int] | list[list[int]]


@dataclass
class EmbeddingResult:
    vectors: np.ndarray
    encoded: Encoded
    timing: BatchTiming
    tokenize_ms: float


def as_sequences(value: EmbeddingInput) -> list[str] | list[list[int]]:
    """OpenAI's four input forms as a list of strings or a list of token-id lists."""
    if isinstance(value, str):
        items: list = [value]
    elif value and all(isinstance(x, int) for x in value):
        items = [value]
    else:
        items = list(value)
    if not items:
        raise InvalidRequest("'input' must not be empty.", "input")
    for item in items:
        if len(item) == 0:
            raise InvalidRequest("'input' must not contain empty strings or empty token arrays.", "input")
        if isinstance(item, str) and invalid_unicode(item):
            raise InvalidRequest("'input' holds text that is not valid Unicode (an unpaired surrogate).", "input")
    return items


def shorten(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """OpenAI's `dimensions`: keep the first n components and (for normalized models) renormalize."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    if not 1 <= dimensions <= vectors.shape[1]:
        raise InvalidRequest(f"'dimensions' must be between 1 and {vectors.shape[1]} for this model.", "dimensions")
    cut = np.ascontiguousarray(vectors[:, :dimensions])
    return l2_normalize(cut) if normalize else cut


def to_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what OpenAI returns for encoding_format=base64."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


class EmbeddingService:
    """Models loaded on first use, one micro-batcher each; lives inside the server's event loop."""

    def __init__(self, settings: Settings, on_batch: Callable[[str, int, int, float], None] | None = None) -> None:
        self.settings = settings
        # one ONNX thread per forward, as many concurrent forwards as threads (see MicroBatcher)
        self.models = EngineRegistry(settings, threads=1)
        self._batchers: dict[str, MicroBatcher] = {}
        self._on_batch = on_batch
        self._lock = asyncio.Lock()

    def manifest(self, name: str | None, kind: EngineKind = "embedding") -> ModelManifest:
        """The named model (the configured one when None or ""); ModelNotFound if it is not pulled."""
        return self.models.manifest(name, kind)

    def loaded(self, name: str) -> bool:
        return name in self._batchers

    def queued_inputs(self) -> int:
        """Inputs waiting for a forward, over all loaded models."""
        return sum(batcher.queued_inputs for batcher in self._batchers.values())

    async def batcher(self, name: str | None, kind: EngineKind = "embedding") -> MicroBatcher:
        """The micro-batcher of the named model of this kind (embedding models and rerankers share this
        one scheduler: per-client turns, queue limits, loading once)."""
        manifest = self.models.manifest(name, kind)
        if manifest.name not in self._batchers:
            async with self._lock:
                if manifest.name not in self._batchers:
                    engine = await asyncio.to_thread(self.models.load, manifest.name, kind)
                    report = self._on_batch
                    self._batchers[manifest.name] = MicroBatcher(
                        engine,
                        forwards=self.settings.threads,
                        niceness=self.settings.compute_niceness,
                        max_wait_ms=self.settings.batch_wait_ms,
                        max_queued_inputs=self.settings.max_queued_inputs,
                        on_batch=(lambda n, t, s, m=manifest.name: report(m, n, t, s)) if report else None,
                    )
        return self._batchers[manifest.name]

    async def embed(
        self, model: str | None, value: EmbeddingInput, *, truncate: bool = True, prefix: str = "", owner: str = ""
    ) -> tuple[MicroBatcher, EmbeddingResult]:
        """Tokenize (off the event loop) and embed through the model's micro-batcher, in `owner`'s turns."""
        batcher = await self.batcher(model)
        items = as_sequences(value)
        tokenize = partial(self._tokenize, batcher.engine, items, prefix)
        encoded, tokenize_ms = await _encode(tokenize, sum(map(len, items)))
        _refuse_truncated(encoded, truncate, batcher.engine.tokenizer.max_length, "Input", "input")
        vectors, timing = await batcher.embed(encoded.ids, owner)
        return batcher, EmbeddingResult(vectors, encoded, timing, tokenize_ms)

    async def score_pairs(
        self,
        model: str | None,
        query: str,
        documents: Sequence[str],
        *,
        truncate: bool = True,
        owner: str = "",
        param: str = "documents",
    ) -> tuple[MicroBatcher, EmbeddingResult]:
        """A reranker's logits (vectors [n, 1]) of the (query, document) pairs, through its micro-batcher
        in `owner`'s turns like any embedding request; `param` is the documents' field, named in errors."""
        if not documents:
            raise InvalidRequest(f"'{param}' must not be empty.", param)
        if len(documents) > self.settings.max_rerank_documents:
            limit = self.settings.max_rerank_documents
            raise InvalidRequest(f"'{param}' holds {len(documents)} documents; at most {limit} are allowed.", param)
        if invalid_unicode(query) or any(map(invalid_unicode, documents)):
            raise InvalidRequest(f"The query or '{param}' holds text that is not valid Unicode.", param)
        batcher = await self.batcher(model, "reranker")
        tokenize = partial(batcher.engine.tokenizer.encode_pairs, query, documents)
        encoded, tokenize_ms = await _encode(tokenize, len(query) * len(documents) + sum(map(len, documents)))
        _refuse_truncated(encoded, truncate, batcher.engine.tokenizer.max_length, "The pair with document", param)
        logits, timing = await batcher.embed(encoded.ids, owner)
        return batcher, EmbeddingResult(logits, encoded, timing, tokenize_ms)

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()

    def _tokenize(self, engine: EmbeddingEngine, items: Sequence[str] | Sequence[list[int]], prefix: str) -> Encoded:
        """Texts with the model's tokenizer; token ids as the client's encoding says (ONNXVEC_TOKEN_IDS)."""
        if isinstance(items[0], str):
            return engine.tokenizer.encode([prefix + text for text in items])  # type: ignore[operator]
        try:
            if self.settings.token_ids == "cl100k_base":
                texts = openai_tokens.decode(items, self.models.store.openai_encoding_dir)  # type: ignore[arg-type]
                return engine.tokenizer.encode([prefix + text for text in texts])
            return engine.tokenizer.truncate_ids(items)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidRequest(str(exc), "input") from exc


async def _encode(tokenize: Callable[[], Encoded], size: int) -> tuple[Encoded, float]:
    """Tokenize on the event loop when short; long inputs on a thread (the tokenizer releases the GIL),
    keeping the loop free. Returns the milliseconds it took too."""
    started = time.perf_counter()
    encoded = tokenize() if size <= INLINE_TOKENIZE else await asyncio.to_thread(tokenize)
    return encoded, (time.perf_counter() - started) * 1000


def _refuse_truncated(encoded: Encoded, truncate: bool, limit: int, what: str, param: str) -> None:
    """With truncate=false, an input over the model's maximum is the client's to shorten (400)."""
    if not truncate and any(encoded.truncated):
        index = encoded.truncated.index(True)
        raise InvalidRequest(
            f"{what} {index} has {encoded.original_tokens[index]} tokens; this model's maximum is {limit}. "
            "Shorten it or leave 'truncate' at true.",
            param,
        )
