"""Logits for the last position only, in a genai model the builder wrote.

The builder's graph applies the language-model head to every position of the input, so a prefill
computes (and writes out) a vocabulary-sized row per prompt token although generation reads only
the last one: for Qwen2.5-0.5B a quarter of the prefill's work and, for a 1,000-token prompt, 600 MB
of float32 logits (20 GB at its 32k context). A Slice before the head keeps the last position;
onnxruntime-genai reads logits of shape [batch, 1, vocab] as it reads the last row of the full ones
(README, Benchmarks: the prefill figures).
"""

from __future__ import annotations

from pathlib import Path

HEAD_OPS = {"MatMul", "MatMulNBits"}
SLICE_NAME = "/lm_head/last_position"


def keep_last_logits(model_path: Path) -> bool:
    """Rewrite the graph (not its external weights) so the head sees the last position only; False
    when there is no `/lm_head/` MatMul to put the Slice before (the graph is left as it was)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    found = [(at, n) for at, n in enumerate(graph.node) if n.op_type in HEAD_OPS and n.name.startswith("/lm_head/")]
    logits = [o for o in graph.output if o.name == "logits"]
    if len(found) != 1 or len(logits) != 1 or any(n.name == SLICE_NAME for n in graph.node):
        return False
    at, head = found[0]
    bounds = {"starts": -1, "ends": np.iinfo(np.int64).max, "axes": 1}
    names = {key: f"{SLICE_NAME}/{key}" for key in bounds}
    graph.initializer.extend(numpy_helper.from_array(np.array([bounds[key]], np.int64), names[key]) for key in bounds)
    last = f"{head.input[0]}{SLICE_NAME}"
    graph.node.insert(at, helper.make_node("Slice", [head.input[0], *names.values()], [last], name=SLICE_NAME))
    head.input[0] = last
    position = logits[0].type.tensor_type.shape.dim[1]
    position.ClearField("dim_param")
    position.dim_value = 1
    onnx.save(model, str(model_path))
    return True
