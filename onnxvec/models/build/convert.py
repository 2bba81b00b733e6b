"""Chat models for onnxruntime-genai, built here: a Hugging Face folder or a GGUF file in, a genai
folder (genai_config.json, model.onnx, tokenizer, chat template) out.

GGUF files are dequantized into a Hugging Face folder with transformers first; the genai model
builder then quantizes again (int4 uses k_quant, which keeps small models coherent). Needs the
`build` extra; serving never does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from onnxvec.errors import ModelError
from onnxvec.models.build.export import export_to_onnx, fuse_encoder, require_export_tools
from onnxvec.models.build.logits import keep_last_logits
from onnxvec.models.build.precision import choose_precision
from onnxvec.models.build.quantize import Int8, quantize_encoder
from onnxvec.models.manifest import ModelManifest, describe_folder, is_cross_encoder
from onnxvec.models.store import ModelStore

Precision = Literal["int4", "int8", "fp32"]
TOOLS = ("torch", "transformers", "onnx_ir", "gguf", "accelerate", "onnxruntime_genai")


def require_build_tools() -> None:
    """Fail before any download or conversion when the `build` extra is not installed."""
    missing = [name for name in TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"building chat models needs {', '.join(missing)}; run `pip install -e '.[build]'`")


def gguf_to_hf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF file into a Hugging Face folder (weights, config, tokenizer, chat template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
    # loaded from GGUF, the model still says it is quantized and refuses to save; its weights are plain now
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_genai(source: Path, out: Path, precision: Precision = "int4", *, show_progress: bool = False) -> None:
    """Run the onnxruntime-genai model builder on a Hugging Face folder or a .gguf file; its own
    progress bars go to the terminal when asked, to a log shown on failure otherwise."""
    require_build_tools()
    with tempfile.TemporaryDirectory(prefix="onnxvec-build-") as tmp:
        folder = source
        if source.is_file() and source.suffix == ".gguf":
            folder = Path(tmp) / "hf"
            gguf_to_hf(source, folder)
        elif not (source / "config.json").is_file():
            raise ModelError(f"{source} is neither a Hugging Face model folder (config.json) nor a .gguf file")
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder"]
        command += ["-i", str(folder), "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(Path(tmp) / "cache")]
        if precision == "int4":
            command += ["--extra_options", "algo_config=k_quant"]
        env = os.environ | {"HF_HUB_OFFLINE": "1"}
        log = Path(tmp) / "builder.log"
        with log.open("w") as output:
            target = None if show_progress else output
            done = subprocess.run(command, env=env, stdout=target, stderr=subprocess.STDOUT if target else None)
        if done.returncode != 0 or not (out / "genai_config.json").is_file():
            text = log.read_text(errors="replace").strip()[-800:] or "see the output above"
            raise ModelError(f"the genai model builder failed ({done.returncode}): {text}")
        keep_last_logits(out / "model.onnx")


def build_chat_model(
    store: ModelStore, name: str, source: Path, precision: Precision = "int4", *, show_progress: bool = False
) -> ModelManifest:
    """`onnxvec models build`: a genai model from a local Hugging Face folder or GGUF file, into the store."""
    require_build_tools()
    if not source.exists():
        raise ModelError(f"{source} does not exist")
    with store.staging(name) as stage:
        build_genai(source, stage, precision, show_progress=show_progress)
        origin = {"type": "build", "path": str(source.resolve()), "precision": precision}
        return store.commit(name, stage, describe_folder(stage), origin)


def convert_encoder(
    store: ModelStore, name: str, folder: Path, *, int8: Int8 | Literal["auto"] | None = None, optimize: bool = False
) -> ModelManifest:
    """`onnxvec models convert`: a Hugging Face encoder folder exported to ONNX for embeddings (or, a
    `*ForSequenceClassification` folder, as a reranker), then optionally fused (ONNX Runtime's
    transformer optimizer) and given per-token int8 weights (see onnxvec.models.build.quantize for
    "mixed" and "all"; "auto" measures which int8 scheme, if any, holds on this CPU:
    onnxvec.models.build.precision)."""
    require_export_tools()
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else None
    if config is None or not (folder / "tokenizer.json").is_file():
        raise ModelError(f"{folder} needs config.json and tokenizer.json (a Hugging Face encoder folder)")
    if int8 == "auto" and is_cross_encoder(config):  # what "auto" measures is embedding quality
        raise ModelError("--int8 auto measures embeddings; convert a reranker with --int8 mixed, all, or none")
    with store.staging(name) as stage:
        for item in folder.iterdir():  # tokenizer and configs; the weights become model.onnx
            if item.is_file() and item.suffix not in {".safetensors", ".bin", ".onnx", ".pt", ".h5"}:
                shutil.copy2(item, stage / item.name)
        pooling = folder / "1_Pooling"
        if pooling.is_dir():
            shutil.copytree(pooling, stage / "1_Pooling")
        model = stage / "model.onnx"
        export_to_onnx(folder, model)
        fields = describe_folder(stage)
        try:
            if optimize:
                fuse_encoder(model, config)
            if int8 == "auto":
                fields["precision"] = choose_precision(
                    stage, model.name, "tokenizer.json", fields["max_seq_length"] or 512, fields["pooling"]
                )
            elif int8:
                quantize_encoder(model, int8)
        except Exception as exc:  # the optimizer and quantizer raise whatever they meet
            raise ModelError(f"converting {folder} failed: {exc}") from exc
        origin = {"type": "convert", "path": str(folder.resolve()), "int8": int8, "optimize": optimize}
        return store.commit(name, stage, fields, origin)
