"""Which precision an encoder runs at on this machine: int8 where it keeps its quality and is faster
here, fp32 otherwise — decided by measuring, at pull time, on the CPU that will run it.

ONNX Runtime's integer kernels differ by CPU. With VNNI or AMX, u8 x s8 products are summed exactly;
with AVX2 alone, pairs of them are summed in int16 first and saturate, so the same int8 model gives
other vectors there (all-MiniLM-L6-v2 per-token int8: lowest cosine to fp32 0.985 on an AVX2 EPYC).
u8 x u8 cannot saturate but runs no faster than fp32 on such a CPU. So each candidate is built
(SmoothQuant-smoothed, per-token int8, see onnxvec/models/build/quantize.py), compared with fp32 on a fixed set of
texts (onnxvec/models/build/quality_texts.txt: every fourth calibrates, the other 240 judge), and timed against
fp32 here; the fastest that holds wins if it is clearly faster, and fp32 otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnxvec.embedding.batching import plan_batches
from onnxvec.embedding.engine import l2_normalize, pad_batch, pool, session_options
from onnxvec.embedding.tokenizer import TextTokenizer
from onnxvec.infra.cpu import Precision, cpu_signature
from onnxvec.models.build.quantize import Int8, WeightType, matmul_inputs, quantize_encoder, smooth_encoder

QUALITY_TEXTS = Path(__file__).with_name("quality_texts.txt")
MIN_COSINE = 0.995  # every text's vector at least this close to fp32's
MEAN_COSINE = 0.999  # and on average this close
MIN_SPEEDUP = 1.1  # int8 must beat fp32 by this much here to be worth any drift at all
FP32_FILE = "model.fp32.onnx"
CANDIDATES: dict[str, tuple[Int8, WeightType]] = {
    "int8-u8s8": ("all", "s8"),  # every MatMul, u8 x s8: the fastest where VNNI/AMX sum exactly
    "int8-u8s8-mixed": ("mixed", "s8"),  # FFN down projections stay float
    "int8-u8u8-mixed": ("mixed", "u8"),  # u8 x u8: cannot saturate on AVX2
}
TIMING_SHAPES = [(64, 32), (16, 128)]  # (batch, tokens): short sentences and typical chunks
TIMING_ROUNDS = 5


def choose_precision(folder: Path, onnx_file: str, tokenizer_file: str, max_length: int, pooling: str) -> Precision:
    """Measure the int8 candidates against the fp32 model `folder/onnx_file`; leave the winner as
    `onnx_file` (with the fp32 model kept as FP32_FILE when the winner is int8)."""
    fp32 = folder / onnx_file
    tokenizer = TextTokenizer(folder / tokenizer_file, max_length)
    texts = QUALITY_TEXTS.read_text(encoding="utf-8").splitlines()
    calibration, judged = texts[::4], [t for i, t in enumerate(texts) if i % 4]
    smoothed = folder / ".smoothed.onnx"
    smooth_encoder(fp32, smoothed, _input_maxima(fp32, tokenizer, calibration))
    paths = {"fp32": fp32}
    for name, (scope, weight_type) in CANDIDATES.items():
        paths[name] = folder / f".{name}.onnx"
        quantize_encoder(smoothed, scope, weight_type=weight_type, out=paths[name])
    smoothed.unlink()
    threads = os.cpu_count() or 1
    sessions = {name: ort.InferenceSession(str(p), session_options(threads)) for name, p in paths.items()}
    reference = _embed(sessions["fp32"], tokenizer, judged, pooling)
    measured: dict[str, dict[str, float]] = {}
    for name in CANDIDATES:
        cosines = (_embed(sessions[name], tokenizer, judged, pooling) * reference).sum(axis=1)
        measured[name] = {"min_cosine": round(float(cosines.min()), 4), "mean_cosine": round(float(cosines.mean()), 5)}
    for name, speedup in _speedups(sessions).items():
        measured[name]["speedup"] = round(speedup, 3)
    variant, reason = pick(measured)
    del sessions
    if variant != "fp32":
        fp32.rename(folder / FP32_FILE)
        paths[variant].rename(fp32)
    for name in CANDIDATES:
        paths[name].unlink(missing_ok=True)
    fallback = FP32_FILE if variant != "fp32" else None
    return Precision(
        variant=variant, cpu=cpu_signature(), reason=reason, measured=measured, fallback_onnx_file=fallback
    )


def pick(measured: dict[str, dict[str, float]]) -> tuple[str, str]:
    """The fastest candidate that holds quality and beats fp32 by MIN_SPEEDUP, else fp32; and why."""
    holding = [
        name
        for name, m in measured.items()
        if m["min_cosine"] >= MIN_COSINE and m["mean_cosine"] >= MEAN_COSINE and m["speedup"] >= MIN_SPEEDUP
    ]
    if holding:
        best = max(holding, key=lambda name: measured[name]["speedup"])
        m = measured[best]
        return best, (
            f"{best} holds quality (lowest cosine to fp32 {m['min_cosine']}, mean {m['mean_cosine']}) "
            f"and runs {m['speedup']}x fp32 on this {cpu_signature()} CPU"
        )
    return "fp32", (
        f"no int8 variant both held quality (lowest cosine >= {MIN_COSINE}, mean >= {MEAN_COSINE}) and ran "
        f">= {MIN_SPEEDUP}x fp32 on this {cpu_signature()} CPU"
    )


def _input_maxima(model: Path, tokenizer: TextTokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """Per-channel max |x| of every weight MatMul's input over the calibration texts."""
    import onnx

    names = matmul_inputs(model)
    proto = onnx.load(str(model))
    for name in names:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = session_options(os.cpu_count() or 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the names
    session = ort.InferenceSession(proto.SerializeToString(), options)
    maxima = {name: np.zeros(1, dtype=np.float32) for name in names}
    encoded = tokenizer.encode(texts)
    for ids in encoded.ids:  # one at a time: padding rows would enter the maxima
        feeds = _feeds(session, *pad_batch([ids], tokenizer.pad_id))
        for name, value in zip(names, session.run(names, feeds), strict=True):
            flat = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            maxima[name] = np.maximum(maxima[name], flat)
    return maxima


def _feeds(session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {i.name: arrays[i.name] for i in session.get_inputs()}


def _embed(session: ort.InferenceSession, tokenizer: TextTokenizer, texts: list[str], pooling: str) -> np.ndarray:
    encoded = tokenizer.encode(texts)
    vectors = np.zeros((len(texts), session.get_outputs()[0].shape[-1]), dtype=np.float32)
    for batch in plan_batches(encoded.tokens, 2048, 64):
        ids, mask = pad_batch([encoded.ids[i] for i in batch], tokenizer.pad_id)
        vectors[batch] = pool(session.run(None, _feeds(session, ids, mask))[0], mask, pooling)
    return l2_normalize(vectors)


def _speedups(sessions: dict[str, ort.InferenceSession]) -> dict[str, float]:
    """fp32 time over each candidate's time, medians of interleaved rounds (the machine is shared)."""
    rng = np.random.default_rng(0)
    runs: list[dict[str, Callable[[], object]]] = []
    for batch, tokens in TIMING_SHAPES:
        ids = rng.integers(1000, 20000, size=(batch, tokens), dtype=np.int64)
        feeds = {name: _feeds(session, ids, np.ones_like(ids)) for name, session in sessions.items()}
        runs.append({name: partial(session.run, None, feeds[name]) for name, session in sessions.items()})
    seconds = dict.fromkeys(sessions, 0.0)
    for shape in runs:
        times: dict[str, list[float]] = {name: [] for name in shape}
        for run in shape.values():
            run()  # warm up
        for _ in range(TIMING_ROUNDS):
            for name, run in shape.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        for name, values in times.items():
            seconds[name] += float(np.median(values))
    return {name: seconds["fp32"] / s for name, s in seconds.items() if name != "fp32"}
