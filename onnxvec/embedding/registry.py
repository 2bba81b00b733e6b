"""The one cache of loaded embedding models, for the API, the worker and the command line: each model
is looked up once (one kind check, onnxvec/models/manifest.py `require`) and loaded once per process.
Nothing here pulls: a model that is not in the store is ModelNotFound, never a download mid-batch."""

from __future__ import annotations

import threading

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.models.manifest import ModelManifest, require
from onnxvec.models.store import ModelStore


class EngineRegistry:
    """Embedding engines by model name, loaded on first use; thread-safe."""

    def __init__(self, settings: Settings, *, threads: int | None = None) -> None:
        self.settings = settings if threads is None else settings.model_copy(update={"threads": threads})
        self.store = ModelStore(settings.models_dir)
        self._engines: dict[str, EmbeddingEngine] = {}
        self._lock = threading.Lock()

    def manifest(self, name: str | None = None) -> ModelManifest:
        """The named embedding model (the default for None or ""): from memory once loaded; else
        ModelNotFound, or InvalidRequest for a model of another kind."""
        name = name or self.settings.embedding_model
        loaded = self._engines.get(name)
        return loaded.manifest if loaded is not None else require(self.store.get(name), "embedding")

    def loaded(self, name: str) -> bool:
        return name in self._engines

    def engine(self, name: str | None = None) -> EmbeddingEngine:
        manifest = self.manifest(name)
        with self._lock:
            if manifest.name not in self._engines:
                self._engines[manifest.name] = EmbeddingEngine(manifest, self.store, self.settings)
            return self._engines[manifest.name]
