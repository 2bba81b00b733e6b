"""The reranker engine: a cross-encoder reads a (query, document) pair together and gives one logit,
its relevance. It is an ONNX encoder like the embedding models, so the same micro-batcher feeds it
(onnxvec/embedding/service.py): a pair is one queued input, batched by tokens like any other."""

from __future__ import annotations

import numpy as np

from onnxvec.embedding.engine import OnnxEncoder, pad_batch
from onnxvec.embedding.tokenizer import PairIds


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """A logit as a relevance score in [0, 1] (what Cohere and Jina return; TEI's raw_scores are logits)."""
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


class CrossEncoder(OnnxEncoder):
    """One loaded reranker: BERT-style `*ForSequenceClassification` with one output logit."""

    kind = "reranker"
    dims = 1

    def forward(self, batch: list[PairIds]) -> np.ndarray:  # type: ignore[override]
        """Logits [len(batch), 1] of right-padded pairs, each with its own segments (token type ids)."""
        input_ids, mask = pad_batch(batch, self.tokenizer.pad_id)
        segments = np.zeros_like(input_ids)
        for row, pair in enumerate(batch):
            segments[row, : len(pair)] = pair.type_ids
        logits = self.run(input_ids, mask, segments)
        return logits.reshape(len(batch), 1).astype(np.float32, copy=False)
