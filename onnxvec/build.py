"""Chat models for onnxruntime-genai, built here: a Hugging Face folder or a GGUF file in, a genai
folder (genai_config.json, model.onnx, tokenizer, chat template) out.

GGUF files are dequantized into a Hugging Face folder with transformers first; the genai model
builder then quantizes again (int4 uses k_quant, which keeps small models coherent). Needs the
`build` extra; serving never does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from onnxvec.modelstore import ModelError

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


def build_genai(source: Path, out: Path, precision: Precision = "int4", *, log: Path | None = None) -> None:
    """Run the onnxruntime-genai model builder on a Hugging Face folder or a .gguf file."""
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
        with (log or Path(tmp) / "builder.log").open("w") as output:
            done = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        if done.returncode != 0 or not (out / "genai_config.json").is_file():
            text = (log or Path(tmp) / "builder.log").read_text(errors="replace")
            raise ModelError(f"the genai model builder failed ({done.returncode}): {text.strip()[-800:]}")
