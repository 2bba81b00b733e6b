"""Int8 weights for an encoder's MatMuls, with one activation scale per token: batch-invariant.

ONNX Runtime's dynamic quantization gives each MatMul's whole input one scale, so a text's vector
changed with whatever shared its batch (measured on all-MiniLM-L6-v2: up to 0.016 per element), which
an embedding service cannot have. Here every MatMul with a 2-D float weight becomes: a scale per row
of its input (max |x| / 127), the row rounded to uint8 around 128, MatMulInteger against int8 weights
with a scale per output column, and the int32 result scaled back. Rows never meet, so batching
changes nothing, and per-token scales keep more precision than one per batch.

A few input channels of a transformer's activations are far larger than the rest, and a per-token
scale must cover them, so the other channels lose precision. `smooth_encoder` (SmoothQuant) moves
part of that range into the weights: x / s and s * W, with s from calibration maxima. Fixed numbers,
so still batch-invariant. Weights come as int8 (u8 x s8 kernels) or as uint8 around 128 (u8 x u8):
without VNNI, ONNX Runtime's u8 x s8 kernel adds pairs of products in int16, which saturates; u8 x u8
does not (onnxvec/models/build/precision.py measures which one a CPU can use).
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
WeightType = Literal["s8", "u8"]
SMOOTHING = 0.7  # SmoothQuant's alpha; 0.5 and 0.7 measured on all-MiniLM-L6-v2, 0.7 closer to fp32


def quantize_encoder(model: Path, scope: Int8, *, weight_type: WeightType = "s8", out: Path | None = None) -> None:
    """Rewrite `model` (in place, or into `out`) with per-token int8 MatMuls (see the module docstring)."""
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
        levels = np.round(w / column_scale)
        stored = levels.astype(np.int8) if weight_type == "s8" else (levels + 128).astype(np.uint8)
        graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(stored, f"{prefix}/weight"),
                onnx.numpy_helper.from_array(column_scale.astype(np.float32), f"{prefix}/column_scale"),
            ]
        )
        zero_points = ["int8/zero"] + (["int8/zero"] if weight_type == "u8" else [])
        # column scale first, row scale last: ORT fuses Mul(Cast(MatMulInteger), a * b) into
        # MatMulIntegerToFloat, whose input scale must be per tensor, and a per-row one came out wrong
        nodes += [
            onnx.helper.make_node("MatMulInteger", [quantized, f"{prefix}/weight", *zero_points], [f"{prefix}/i32"]),
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
    onnx.save(proto, str(out or model))


def _weight_matmuls(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    weights = {init.name: init for init in graph.initializer}
    return [
        node
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in weights and len(weights[node.input[1]].dims) == 2
    ]


def matmul_inputs(model: Path) -> list[str]:
    """The activations that feed weight MatMuls: what `smooth_encoder` needs calibration maxima of."""
    import onnx

    return sorted({node.input[0] for node in _weight_matmuls(onnx.load(str(model)).graph)})


def smooth_encoder(model: Path, out: Path, input_max: dict[str, np.ndarray], alpha: float = SMOOTHING) -> None:
    """Write `model` with x / s before each weight MatMul and s * W in it, s = max|x|^a / max|W|^(1-a)
    per input channel (SmoothQuant); `input_max` holds each MatMul input's per-channel max |x|."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model))
    graph = proto.graph
    weights = {init.name: init for init in graph.initializer}
    matmuls = _weight_matmuls(graph)
    scales: dict[str, np.ndarray] = {}
    for x in sorted({node.input[0] for node in matmuls}):
        rows = [np.abs(numpy_helper.to_array(weights[n.input[1]])).max(axis=1) for n in matmuls if n.input[0] == x]
        weight_max = np.maximum(np.max(rows, axis=0), 1e-5)
        scales[x] = (np.maximum(input_max[x], 1e-5) ** alpha / weight_max ** (1 - alpha)).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(1 / scales[x], f"{x}/smooth"))
    smoothing = {x: onnx.helper.make_node("Mul", [x, f"{x}/smooth"], [f"{x}/smoothed"]) for x in scales}
    targets = {node.output[0] for node in matmuls}
    nodes = []
    for node in graph.node:
        if node.output[0] in targets:
            x = node.input[0]
            if x in smoothing:
                nodes.append(smoothing.pop(x))
            scaled = numpy_helper.to_array(weights[node.input[1]]) * scales[x][:, None]
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), node.input[1]))
            node.input[0] = f"{x}/smoothed"
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(proto, str(out))


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
