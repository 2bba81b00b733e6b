"""The model store: models on disk, each with a manifest (pulls: onnxvec/models/pull.py).

A model is a folder ``<home>/models/<name>/`` holding its files and ``manifest.json``. A pull writes
into a temporary folder and renames it into place, so a model is either whole or absent.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onnxvec.errors import ModelNotFound
from onnxvec.models.catalog import CATALOG
from onnxvec.models.manifest import MANIFEST, ModelManifest, sha256_file
from onnxvec.values import unstorable


class ModelStore:
    """Models on disk under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith(".") or unstorable(name) or len(name.encode()) > 200:
            raise ModelNotFound(f"invalid model name {name[:60]!r}")
        return self.root / name

    def get(self, name: str) -> ModelManifest:
        manifest = self.path(name) / MANIFEST
        if not manifest.is_file():
            if name in CATALOG:
                raise ModelNotFound(f"model {name!r} is not pulled; run `onnxvec models pull {name}`")
            here = sorted(found.parent.name for found in self.root.glob(f"*/{MANIFEST}"))
            raise ModelNotFound(f"model {name!r} does not exist here; the models here: {', '.join(here) or 'none'}")
        return ModelManifest.model_validate_json(manifest.read_text())

    def list(self) -> list[ModelManifest]:
        if not self.root.is_dir():
            return []
        return [self.get(p.name) for p in sorted(self.root.iterdir()) if (p / MANIFEST).is_file()]

    @property
    def openai_encoding_dir(self) -> Path:
        """tiktoken's cache folder holding cl100k_base (onnxvec/embedding/openai_tokens.py), shared by all models."""
        return self.root / ".tiktoken"

    def remove(self, name: str) -> None:
        self.get(name)
        shutil.rmtree(self.path(name))

    def verify(self, name: str) -> list[str]:
        """Files whose sha256 no longer matches the manifest (empty when the model is intact)."""
        manifest, folder = self.get(name), self.path(name)
        return [
            f for f, digest in manifest.files.items() if not (folder / f).is_file() or sha256_file(folder / f) != digest
        ]

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A folder beside the final one; renamed into place on success, removed otherwise."""
        self.path(name)
        self.root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=self.root, prefix=f".pull-{name}-"))
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def commit(self, name: str, stage: Path, fields: dict[str, Any], source: dict[str, Any]) -> ModelManifest:
        files = {p.relative_to(stage).as_posix(): sha256_file(p) for p in sorted(stage.rglob("*")) if p.is_file()}
        manifest = ModelManifest(
            name=name,
            files=files,
            source=source,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        )
        (stage / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        stage.chmod(0o755)  # mkdtemp made it private; a worker running as another user must read it
        target = self.path(name)
        # swap by renames, so a reader sees the old model or the new one, never a half-deleted folder
        retired = Path(tempfile.mkdtemp(dir=self.root, prefix=f".old-{name}-")) / name
        if target.exists():
            target.rename(retired)
        stage.rename(target)
        shutil.rmtree(retired.parent, ignore_errors=True)
        return manifest
