"""The one cache of loaded ONNX models, for the API, the worker and the command line: embedding models
and rerankers alike, each looked up once (one kind check, onnxvec/models/manifest.py `require`) and
loaded once per process. Nothing here pulls: a model that is not in the store is ModelNotFound, never a
download mid-batch."""

from __future__ import annotations

import threading
from typing import Literal

from onnxvec.config import Settings
from onnxvec.embedding.crossencoder import CrossEncoder
from onnxvec.embedding.engine import EmbeddingEngine, OnnxEncoder
from onnxvec.errors import InvalidRequest
from onnxvec.models.manifest import ModelManifest, require
from onnxvec.models.store import ModelStore

EngineKind = Literal["embedding", "reranker"]
_ENGINES: dict[str, type[OnnxEncoder]] = {"embedding": EmbeddingEngine, "reranker": CrossEncoder}


class EngineRegistry:
    """Engines by model name, loaded on first use; thread-safe."""

    def __init__(self, settings: Settings, *, threads: int | None = None) -> None:
        self.settings = settings if threads is None else settings.model_copy(update={"threads": threads})
        self.store = ModelStore(settings.models_dir)
        self._engines: dict[str, OnnxEncoder] = {}
        self._lock = threading.Lock()

    def manifest(self, name: str | None = None, kind: EngineKind = "embedding") -> ModelManifest:
        """The named model of this kind (the configured one for None or ""): from memory once loaded;
        else ModelNotFound, or InvalidRequest for a model of another kind or no reranker configured."""
        name = name or (self.settings.embedding_model if kind == "embedding" else self.settings.rerank_model)
        if not name:
            raise InvalidRequest(
                "No reranker is configured (ONNXVEC_RERANK_MODEL) and the request names none.", "model"
            )
        loaded = self._engines.get(name)
        return require(loaded.manifest if loaded is not None else self.store.get(name), kind)

    def loaded(self, name: str) -> bool:
        return name in self._engines

    def engine(self, name: str | None = None) -> EmbeddingEngine:
        """The embedding engine of the named model (the default for None)."""
        return self.load(name, "embedding")  # type: ignore[return-value]

    def load(self, name: str | None, kind: EngineKind) -> OnnxEncoder:
        """The engine of the named model of this kind, loaded now if it is not yet."""
        manifest = self.manifest(name, kind)
        with self._lock:
            if manifest.name not in self._engines:
                self._engines[manifest.name] = _ENGINES[kind](manifest, self.store, self.settings)
            return self._engines[manifest.name]
