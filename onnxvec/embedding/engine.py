"""The embedding engine: token-budget batches through one ONNX Runtime session, pooled and normalized
(the session, tokenizer and inputs shared with the cross-encoder of onnxvec/embedding/crossencoder.py).

Vectors do not depend on batching: each batch is padded on the right and the attention mask keeps
padding out of both attention and pooling, so an input's vector is the same alone or in any batch.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from onnxvec.config import Settings
from onnxvec.embedding.batching import plan_batches
from onnxvec.embedding.tokenizer import Encoded, TextTokenizer
from onnxvec.errors import ConfigurationError, ModelError
from onnxvec.models.manifest import Kind, ModelManifest, require
from onnxvec.models.store import ModelStore

log = logging.getLogger(__name__)
_KNOWN_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
_NUMPY_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclass(frozen=True)
class Embeddings:
    """Vectors in input order, with how many tokens each input used and whether it was truncated."""

    vectors: np.ndarray
    tokens: list[int]
    truncated: list[bool]
    original_tokens: list[int]


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Reduce [batch, seq, dim] token states to [batch, dim] with padding masked out."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        return hidden[np.arange(hidden.shape[0]), mask.sum(axis=1) - 1]
    if mode == "max":
        return np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)
    if mode == "mean":
        weights = mask[..., None].astype(hidden.dtype)
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    raise ValueError(f"unknown pooling {mode!r}")


def pad_batch(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64 ids and the attention mask that keeps the padding out."""
    longest = max(len(ids) for ids in batch)
    input_ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), longest), dtype=np.int64)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return input_ids, mask


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def providers(choice: str) -> list[str]:
    """CUDA when asked for or (auto) when this onnxruntime build has it; CPU always as the fallback."""
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if choice == "cuda" and not has_cuda:
        raise ConfigurationError("ONNXVEC_PROVIDER=cuda but this onnxruntime has no CUDAExecutionProvider")
    return (["CUDAExecutionProvider"] if has_cuda and choice != "cpu" else []) + ["CPUExecutionProvider"]


class OnnxEncoder(ABC):
    """One loaded ONNX encoder (an embedding model or a cross-encoder) with its tokenizer; what the
    micro-batcher feeds. Thread-compatible (ONNX Runtime sessions allow concurrent runs)."""

    kind: Kind
    dims: int  # values per input the forward returns

    def __init__(self, manifest: ModelManifest, store: ModelStore, settings: Settings) -> None:
        require(manifest, self.kind)
        folder = store.path(manifest.name)
        self.manifest = manifest
        self.token_budget = settings.token_budget
        self.max_batch_size = settings.max_batch_size
        self.tokenizer = TextTokenizer(folder / str(manifest.tokenizer_file), manifest.max_seq_length or 512)
        self.session = ort.InferenceSession(
            str(folder / str(manifest.runnable_onnx_file())),
            session_options(settings.threads),
            providers=providers(settings.provider),
        )
        inputs = {i.name: i for i in self.session.get_inputs()}
        unknown = {name for name, i in inputs.items() if name not in _KNOWN_INPUTS or i.type not in _NUMPY_TYPES}
        if "input_ids" not in inputs or unknown:
            raise ModelError(f"{manifest.name}: unsupported model inputs {sorted(unknown) or sorted(inputs)}")
        self._input_types = {name: _NUMPY_TYPES[i.type] for name, i in inputs.items()}
        self._output = self.session.get_outputs()[0].name

    @abstractmethod
    def forward(self, batch: list[list[int]]) -> np.ndarray:
        """[len(batch), dims] float32 for one batch of token ids (with special tokens)."""

    def run(self, input_ids: np.ndarray, mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        """One ONNX Runtime run; the inputs the model does not take are left out."""
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_type_ids}
        feeds = {name: feeds[name].astype(dtype, copy=False) for name, dtype in self._input_types.items()}
        return self.session.run([self._output], feeds)[0]


class EmbeddingEngine(OnnxEncoder):
    """One loaded embedding model."""

    kind = "embedding"

    def __init__(self, manifest: ModelManifest, store: ModelStore, settings: Settings) -> None:
        super().__init__(manifest, store, settings)
        self._passage_prefix = self.tokenizer.content_ids(manifest.passage_prefix)

    @property
    def dims(self) -> int:
        return int(self.manifest.dims)  # type: ignore[arg-type]  (require checked it)

    @property
    def passage_tokens(self) -> int:
        """Room for a stored passage's own tokens: the model's length less special tokens and passage prefix."""
        return self.tokenizer.content_length - len(self._passage_prefix)

    def passage_ids(self, token_ids: Sequence[int]) -> list[int]:
        """A stored passage (a chunk's ids) as the model expects it: e5/bge-style models embed documents
        with their passage prefix, as queries get theirs, or the two sides are not comparable."""
        return self.tokenizer.with_special_tokens([*self._passage_prefix, *token_ids])

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts (truncated at the model's max length, flagged per input)."""
        return self._embed(self.tokenizer.encode(texts))

    def embed_ids(self, ids: Sequence[Sequence[int]]) -> Embeddings:
        """Embed pre-tokenized inputs, taken as given and cut at the model's max length."""
        return self._embed(self.tokenizer.truncate_ids(ids))

    def _embed(self, encoded: Encoded) -> Embeddings:
        vectors = np.zeros((len(encoded.ids), self.dims), dtype=np.float32)
        for batch in plan_batches(encoded.tokens, self.token_budget, self.max_batch_size):
            vectors[batch] = self.forward([encoded.ids[i] for i in batch])
        return Embeddings(vectors, encoded.tokens, encoded.truncated, encoded.original_tokens)

    def forward(self, batch: list[list[int]]) -> np.ndarray:
        """One ONNX Runtime run over a right-padded batch; pooled and (per manifest) normalized."""
        if any(len(ids) == 0 for ids in batch):
            raise ValueError("cannot embed an empty token sequence")
        input_ids, mask = pad_batch(batch, self.tokenizer.pad_id)
        hidden = self.run(input_ids, mask, np.zeros_like(input_ids))
        pooled = hidden if hidden.ndim == 2 else pool(hidden, mask, self.manifest.pooling or "mean")
        pooled = pooled.astype(np.float32, copy=False)
        return l2_normalize(pooled) if self.manifest.normalize else pooled
