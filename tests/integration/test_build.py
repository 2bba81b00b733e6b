"""`onnxvec models convert` (encoder → ONNX, fusions, int8) and `onnxvec models build` (→ genai) on
small random models the tests make, checked against PyTorch and by loading what was built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from onnxvec.chat.generate import ChatEngine, Sampling
from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine, l2_normalize
from onnxvec.errors import ModelError
from onnxvec.models.build.convert import build_chat_model, convert_encoder
from onnxvec.models.build.logits import keep_last_logits
from onnxvec.models.store import ModelStore

pytestmark = pytest.mark.slow  # minutes: `pytest -m 'not slow'` leaves it out

SENTENCES = ["The cat sits on the mat.", "Embeddings map text to vectors.", "A longer sentence " * 8]


def _torch_embeddings(folder: Path, engine: EmbeddingEngine) -> np.ndarray:
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(folder).eval()
    rows = []
    for ids in engine.tokenizer.encode(SENTENCES).ids:
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
        rows.append(hidden.mean(axis=0))
    return l2_normalize(np.array(rows, dtype=np.float32))


def test_convert_matches_pytorch(tiny_encoder_folder: Path, settings: Settings, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    manifest = convert_encoder(store, "random-bert", tiny_encoder_folder)
    assert (manifest.kind, manifest.dims, manifest.pooling) == ("embedding", 32, "mean")
    assert "model.safetensors" not in manifest.files and "model.onnx" in manifest.files
    engine = EmbeddingEngine(manifest, store, settings)
    np.testing.assert_allclose(
        engine.embed(SENTENCES).vectors, _torch_embeddings(tiny_encoder_folder, engine), atol=1e-5
    )


def test_convert_command_with_fusions_and_int8(tiny_encoder_folder: Path, settings: Settings, tmp_path: Path) -> None:
    import onnx

    home = tmp_path / "home"
    env = {**os.environ, "ONNXVEC_HOME": str(home)}
    command = [sys.executable, "-m", "onnxvec", "models", "convert", str(tiny_encoder_folder), "--name", "bert-q"]
    done = subprocess.run(
        [*command, "--int8", "mixed", "--optimize"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "bert-q: embedding, 32 dims, pooling mean" in done.stdout
    store = ModelStore(home / "models")
    manifest = store.get("bert-q")
    assert manifest.source["int8"] == "mixed" and manifest.source["optimize"]
    graph = onnx.load(str(store.path("bert-q") / "model.onnx")).graph
    floats = {i.name: list(i.dims) for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    float_matmuls = [floats.get(n.input[1]) for n in graph.node if n.op_type == "MatMul" and n.input[1] in floats]
    assert float_matmuls == [[64, 32], [64, 32]]  # the FFN down projections stay float, one per layer
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)
    engine = EmbeddingEngine(manifest, store, settings)
    reference = _torch_embeddings(tiny_encoder_folder, engine)
    cosines = (engine.embed(SENTENCES).vectors * reference).sum(axis=1)
    assert cosines.min() > 0.95, cosines  # int8 weights: close to, not equal to, fp32
    wrong = subprocess.run([*command, "--int8", "half"], env=env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and "--int8 must be auto, mixed or all" in wrong.stderr
    missing = subprocess.run([*command[:5], str(tmp_path), "--name", "x"], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "config.json and tokenizer.json" in missing.stderr


def test_build_command_makes_a_genai_model(tiny_chat: str, model_store: ModelStore, tmp_path: Path) -> None:
    source = Path(model_store.get(tiny_chat).source["path"]).parent / "genai-hf"  # tests/tinychat.py's HF folder
    home = tmp_path / "home"
    env = {**os.environ, "ONNXVEC_HOME": str(home)}
    command = [sys.executable, "-m", "onnxvec", "models", "build", str(source), "--name", "tiny-fp32"]
    done = subprocess.run([*command, "--precision", "fp32"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    store = ModelStore(home / "models")
    manifest = store.get("tiny-fp32")
    assert manifest.kind == "chat" and manifest.source["precision"] == "fp32"
    engine = ChatEngine(store.path("tiny-fp32"), "tiny-fp32")
    prompt = engine.encode(engine.render([{"role": "user", "content": "hi"}]))
    generation = engine.generate(prompt, Sampling(max_tokens=4, min_tokens=4), threading.Event())
    assert "".join(generation) and generation.completion_tokens == 4
    _last_position_logits_match_pytorch(store.path("tiny-fp32") / "model.onnx", source, prompt)
    with pytest.raises(ModelError, match="neither a Hugging Face model folder"):
        build_chat_model(store, "nothing", tmp_path)


def _last_position_logits_match_pytorch(model: Path, source: Path, prompt: list[int]) -> None:
    """The built graph gives logits for the last position only (onnxvec/models/build/logits.py), and
    they are PyTorch's for that position."""
    import onnx
    import onnxruntime as ort
    import torch
    from transformers import LlamaForCausalLM

    (logits,) = [o for o in onnx.load(str(model), load_external_data=False).graph.output if o.name == "logits"]
    assert logits.type.tensor_type.shape.dim[1].dim_value == 1
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {"input_ids": np.array([prompt]), "attention_mask": np.ones((1, len(prompt)))}
    decoder = json.loads((model.parent / "genai_config.json").read_text())["model"]["decoder"]
    for past in session.get_inputs()[2:]:  # an empty cache: [batch, kv heads, 0 positions, head size]
        feeds[past.name] = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]))
    feeds = {i.name: feeds[i.name].astype(np.int64 if "int64" in i.type else np.float32) for i in session.get_inputs()}
    (ours,) = session.run(["logits"], feeds)
    with torch.no_grad():
        theirs = LlamaForCausalLM.from_pretrained(source)(torch.tensor([prompt])).logits[:, -1:].numpy()
    assert ours.shape == theirs.shape == (1, 1, theirs.shape[-1])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert not keep_last_logits(model)  # once only
