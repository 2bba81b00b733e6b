"""The model store refuses bad pulls and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxvec.errors import ModelError, ModelNotFound
from onnxvec.models.pull import pull, pull_local
from onnxvec.models.store import ModelStore


def test_bad_requests_leave_nothing_behind(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelNotFound, match="not in the catalog"):
        pull(store, "no-such-model")
    with pytest.raises(ModelError, match="not a folder"):
        pull_local(store, "x", tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="neither an ONNX model"):
        pull_local(store, "x", empty)
    with pytest.raises(ModelError, match="invalid model name"):
        store.get("../etc")
    assert list((tmp_path / "models").iterdir()) == []
