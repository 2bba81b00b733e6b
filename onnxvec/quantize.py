"""Int8 weights for an encoder's MatMuls, with one activation scale per token: batch-invariant.

ONNX Runtime's dynamic quantization gives each MatMul's whole input one scale, so a text's vector
changed with whatever shared its batch (measured on all-MiniLM-L6-v2: up to 0.016 per element), which
an embedding service cannot have. Here every MatMul with a 2-D float weight becomes: a scale per row
of its input (max |x| / 127), the row rounded to uint8 around 128, MatMulInteger against int8 weights
with a scale per output column, and the int32 result scaled back. Rows never meet, so batching
changes nothing, and per-token scales keep more precision than one per batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # onnx comes with the build extra; serving never imports this module
    import onnx

# "all": every weight MatMul; "mixed": the FFN down projections (weights taller than wide, inputs with
# GELU's outliers) stay float
Int8 = Literal["mixed", "all"]


def quantize_encoder(model: Path, scope: Int8) -> None:
    """Rewrite `model` in place with per-token int8 MatMuls (see the module docstring)."""
    import onnx

    proto = onnx.load(str(model))
    graph = proto.graph
    weights = {init.name: init for init in graph.initializer}
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    graph.initializer.extend(_constants(opset))
    rows: dict[str, tuple[str, str]] = {}  # input -> (its uint8 rows, its row scales): Q, K and V share one
    nodes = []
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or not _quantizable(weight, scope):
            nodes.append(node)
            continue
        prefix = f"{node.name or node.output[0]}/int8"
        if node.input[0] not in rows:
            rows[node.input[0]] = (f"{prefix}/rows", f"{prefix}/row_scale")
            nodes += _quantize_rows(node.input[0], *rows[node.input[0]], opset)
        quantized, scale = rows[node.input[0]]
        w = onnx.numpy_helper.to_array(weight).astype(np.float32)
        column_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127
        graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(np.round(w / column_scale).astype(np.int8), f"{prefix}/weight"),
                onnx.numpy_helper.from_array(column_scale.astype(np.float32), f"{prefix}/column_scale"),
            ]
        )
        # column scale first, row scale last: ORT fuses Mul(Cast(MatMulInteger), a * b) into
        # MatMulIntegerToFloat, whose input scale must be per tensor, and a per-row one came out wrong
        nodes += [
            onnx.helper.make_node("MatMulInteger", [quantized, f"{prefix}/weight", "int8/zero"], [f"{prefix}/i32"]),
            onnx.helper.make_node("Cast", [f"{prefix}/i32"], [f"{prefix}/f32"], to=onnx.TensorProto.FLOAT),
            onnx.helper.make_node("Mul", [f"{prefix}/f32", f"{prefix}/column_scale"], [f"{prefix}/columns"]),
            onnx.helper.make_node("Mul", [f"{prefix}/columns", scale], [node.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(model))


def _quantizable(weight: onnx.TensorProto, scope: Int8) -> bool:
    import onnx

    if len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
        return False
    return scope == "all" or weight.dims[0] <= weight.dims[1]


def _constants(opset: int) -> list[onnx.TensorProto]:
    from onnx import numpy_helper

    values = {"int8/127": np.float32(127), "int8/eps": np.float32(1e-12), "int8/128": np.float32(128)}
    tensors = [numpy_helper.from_array(np.array(v), k) for k, v in values.items()]
    tensors.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), "int8/zero"))
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18 on
        tensors.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "int8/last_axis"))
    return tensors


def _quantize_rows(x: str, quantized: str, scale: str, opset: int) -> list[onnx.NodeProto]:
    """Nodes for: scale = max(|x| over the last axis) / 127; quantized = uint8(round(x / scale) + 128)."""
    from onnx import TensorProto, helper

    axes = {"axes": [-1]} if opset < 18 else {}
    reduce_inputs = [f"{x}/abs"] + (["int8/last_axis"] if opset >= 18 else [])
    return [
        helper.make_node("Abs", [x], [f"{x}/abs"]),
        helper.make_node("ReduceMax", reduce_inputs, [f"{x}/amax"], keepdims=1, **axes),
        helper.make_node("Max", [f"{x}/amax", "int8/eps"], [f"{x}/amax_eps"]),
        helper.make_node("Div", [f"{x}/amax_eps", "int8/127"], [scale]),
        helper.make_node("Div", [x, scale], [f"{x}/scaled"]),
        helper.make_node("Round", [f"{x}/scaled"], [f"{x}/rounded"]),
        helper.make_node("Add", [f"{x}/rounded", "int8/128"], [f"{x}/shifted"]),
        helper.make_node("Cast", [f"{x}/shifted"], [quantized], to=TensorProto.UINT8),
    ]
