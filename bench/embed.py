"""Embedding throughput: the engine against a bare ONNX Runtime loop on the same batches, and the roofline.

The engine adds tokenization, batch planning, padding, pooling and normalization around
``session.run``; this measures what those cost by running the same padded batches through a fresh,
plain session. The machines are shared and noisy, so runs alternate and the best of each is kept,
and the sgemm peak is measured in the same process rather than taken from a table.

Usage: python bench/embed.py [--model NAME] [--texts 2000] [--rounds 3] [--slices 8] [--no-variants]
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from onnxvec.config import Settings
from onnxvec.embedding.batching import plan_batches
from onnxvec.embedding.engine import EmbeddingEngine, pad_batch, providers, session_options
from onnxvec.embedding.registry import EngineRegistry
from onnxvec.errors import ModelError, ModelNotFound
from onnxvec.models.pull import pull
from onnxvec.models.store import ModelStore

VARIANTS = {"fp32": "all-MiniLM-L6-v2-fp32", "int8": "all-MiniLM-L6-v2-int8", "default": "all-MiniLM-L6-v2"}
SHAPES = [(16, 64), (32, 64), (64, 32), (128, 16), (256, 16)]  # (seq_len, batch)
# MiniLM-L6 shape (config.json of all-MiniLM-L6-v2)
HIDDEN, LAYERS, INTERMEDIATE = 384, 6, 1536
WORD_TEXT = (  # common words (1 token each) plus some that WordPiece splits into several
    "the of and to in is was for on that with as by at from it an be this are which or his her they have had "
    "not but were one all their there been has when who will more no if out so said what up its about into "
    "than them can only other new some could time these two may then do first any my now such like our over "
    "much your way well down should because each just those people how too little state good very make world "
    "still own see work long get here between both life being under never day same another know while last "
    "database vector embedding transformer tokenizer throughput latency postgres quantization benchmark "
    "internationalization electroencephalography photosynthesis counterintuitively mischaracterization "
    "Kubernetes PyTorch onnxruntime HNSW pgvector Zürich naïve café , . ; ( ) 2048 3.14159 2026-11-22"
)
WORDS = WORD_TEXT.split()


@dataclass(frozen=True)
class Slice:
    """Part of the corpus: its texts for the engine, its padded batches for the bare session."""

    texts: list[str]
    feeds: list[dict[str, np.ndarray]]
    lengths: list[int]


def make_corpus(engine: EmbeddingEngine, count: int, seed: int = 1234) -> list[str]:
    """Texts whose token counts (with [CLS]/[SEP]) are log-uniform over 8–256, in random order.

    Each word's token cost is known up front (WordPiece splits on whitespace, so costs add up),
    so texts are built to a drawn target length without re-tokenizing them one by one.
    """
    rng = np.random.default_rng(seed)
    costs = [len(ids) - 2 for ids in engine.tokenizer.encode(WORDS).ids]
    targets = np.exp(rng.uniform(math.log(8), math.log(257), size=count)).astype(int)
    texts = []
    for target in targets:
        words, used = [], 2
        while used < target:
            pick = int(rng.integers(len(WORDS)))
            if used + costs[pick] <= target:
                words.append(WORDS[pick])
                used += costs[pick]
        texts.append(" ".join(words))
    return texts


def flops_per_text(tokens: int) -> float:
    """Useful forward FLOPs for one unpadded input of ``tokens`` tokens (multiply-add = 2 FLOPs).

    Per layer and token: Q, K, V and output projections 4·2·h² plus the FFN 2·2·h·i; attention
    scores (QKᵀ) and the weighted sum (AV) add 2·L·h each, i.e. 4·L·h per token with L = tokens.
    LayerNorm, softmax, GELU and embedding lookups are a few hundred FLOPs per token and left out.
    At L = 32: 6 · (2·(4·384² + 2·384·1536) + 4·32·384) ≈ 21.5 MFLOP per token.
    """
    dense = 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE)
    return LAYERS * tokens * (dense + 4 * tokens * HIDDEN)


def sgemm_gflops(threads: int, repeats: int = 5) -> float:
    """The best float32 matmul rate numpy's BLAS or ONNX Runtime's own MatMul reach, at a square shape
    and at the model's own GEMM shapes (tokens x 384 x 1536 and back): the practical compute peak of
    this machine right now. A lone 2048-cube from numpy fell well below the engine on an AVX-512 EPYC."""
    from onnx import TensorProto, helper

    best = 0.0
    for m, k, n in [(2048, 2048, 2048), (4096, HIDDEN, INTERMEDIATE), (4096, INTERMEDIATE, HIDDEN)]:
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["y"])],
            "sgemm",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
            [helper.make_tensor("b", TensorProto.FLOAT, [k, n], b.tobytes(), raw=True)],  # prepacked, as weights are
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        session = ort.InferenceSession(model, session_options(threads), providers=["CPUExecutionProvider"])
        numpy_s = min(_timed(lambda a=a, b=b: a @ b) for _ in range(repeats))
        ort_s = min(_timed(lambda s=session, a=a: s.run(None, {"a": a})) for _ in range(repeats))
        best = max(best, 2 * m * k * n / min(numpy_s, ort_s) / 1e9)
    return best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_session(store: ModelStore, name: str, settings: Settings) -> ort.InferenceSession:
    """A fresh, plain session on a model's ONNX file, with the engine's options and nothing around it."""
    path = store.path(name) / str(store.get(name).runnable_onnx_file())
    return ort.InferenceSession(str(path), session_options(settings.threads), providers=providers(settings.provider))


def padded_feeds(
    session: ort.InferenceSession, batches: list[list[list[int]]], pad_id: int
) -> list[dict[str, np.ndarray]]:
    """Right-padded input arrays for each batch, built once so the bare loop times session.run only."""
    names = {i.name for i in session.get_inputs()}
    feeds = []
    for batch in batches:
        input_ids, mask = pad_batch(batch, pad_id)
        arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        feeds.append({k: v for k, v in arrays.items() if k in names})
    return feeds


def run_all(session: ort.InferenceSession, feeds: list[dict[str, np.ndarray]]) -> None:
    for feed in feeds:
        session.run(None, feed)


def compare_variants(settings: Settings, store: ModelStore, rounds: int) -> dict | None:
    """Bare-session tokens/s of each variant (fp32, ready-made int8, the per-token int8 default)
    at fixed (seq_len, batch) shapes, all tokens real."""
    try:
        for name in VARIANTS.values():
            _ensure(store, name)
    except (ModelError, ImportError) as exc:
        print(f"note: no variants table, a variant is unavailable: {exc}")
        return None
    sessions = {k: bare_session(store, n, settings) for k, n in VARIANTS.items()}
    rng, table = np.random.default_rng(7), {}
    print(f"{'seq×batch':>10} " + " ".join(f"{k + ' tok/s':>13}" for k in VARIANTS) + "  winner")
    for seq, batch in SHAPES:
        ids = rng.integers(1000, 29000, size=(batch, seq), dtype=np.int64)
        arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        best = {k: math.inf for k in sessions}
        for _ in range(rounds + 1):  # the first pass also warms the arena for this shape
            for key, session in sessions.items():
                feed = {i.name: arrays[i.name] for i in session.get_inputs()}
                best[key] = min(best[key], _timed(lambda s=session, f=feed: s.run(None, f)))
        rates = {k: seq * batch / t for k, t in best.items()}
        winner = max(rates, key=lambda k: rates[k])
        table[f"{seq}x{batch}"] = {k: round(v) for k, v in rates.items()} | {"winner": winner}
        print(f"{f'{seq}×{batch}':>10} " + " ".join(f"{rates[k]:>13,.0f}" for k in VARIANTS) + f"  {winner}")
    return table


def _ensure(store: ModelStore, name: str) -> None:
    try:
        store.get(name)
    except ModelNotFound:
        print(f"pulling {name} ...", file=sys.stderr, flush=True)
        pull(store, name)


def prepare_slices(
    engine: EmbeddingEngine, session: ort.InferenceSession, texts: list[str], count: int, settings: Settings
) -> list[Slice]:
    """The corpus's batch plan cut into runs of consecutive batches of about equal padded size.

    The plan sorts by length and fills batches greedily, so the texts of a run of consecutive
    batches, given to the engine on their own, are planned into exactly those batches again: the
    slices together are the same work as one ``engine.embed(texts)``, just timed in pieces.
    """
    encoded = engine.tokenizer.encode(texts)
    plan = plan_batches(encoded.tokens, settings.token_budget, settings.max_batch_size)
    batches = [[encoded.ids[i] for i in batch] for batch in plan]
    feeds = padded_feeds(session, batches, engine.tokenizer.pad_id)
    sizes = np.array([f["input_ids"].size for f in feeds])
    midpoints = np.cumsum(sizes) - sizes / 2
    slice_of = (midpoints * count / sizes.sum()).astype(int)
    parts: list[Slice] = []
    for j in sorted(set(slice_of)):
        members = [b for b in range(len(plan)) if slice_of[b] == j]
        indices = sorted(i for b in members for i in plan[b])
        parts.append(
            Slice([texts[i] for i in indices], [feeds[b] for b in members], [encoded.tokens[i] for i in indices])
        )
        again = plan_batches(parts[-1].lengths, settings.token_budget, settings.max_batch_size)
        assert [len(x) for x in again] == [len(plan[b]) for b in members], "slice planned differently"
    return parts


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=settings.embedding_model)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=8, help="engine and bare alternate slice by slice")
    parser.add_argument("--no-variants", action="store_true", help="skip the table of model variants")
    args = parser.parse_args()

    store = ModelStore(settings.models_dir)
    _ensure(store, args.model)
    engine = EngineRegistry(settings).engine(args.model)
    session = bare_session(store, args.model, settings)

    texts = make_corpus(engine, args.texts)
    parts = prepare_slices(engine, session, texts, args.slices, settings)
    lengths = [n for part in parts for n in part.lengths]
    real, padded = sum(lengths), sum(f["input_ids"].size for part in parts for f in part.feeds)
    spread = f"{min(lengths)}/{int(np.median(lengths))}/{max(lengths)}"
    print(
        f"model {args.model}, {settings.threads} threads, budget {settings.token_budget}, "
        f"{len(texts)} texts in {len(parts)} slices, tokens min/median/max {spread}, "
        f"{real} real / {padded} padded tokens in {sum(len(p.feeds) for p in parts)} batches"
    )

    engine.embed(texts[:64])  # warm both sessions before timing
    run_all(session, parts[0].feeds[:2])
    # Noise here comes in phases of seconds to minutes, so the two paths alternate slice by slice
    # (order swapped every time) and each slice keeps its best time per path over the rounds.
    engine_best, bare_best = [math.inf] * len(parts), [math.inf] * len(parts)
    gflops = 0.0
    for round_no in range(args.rounds):
        gflops = max(gflops, sgemm_gflops(settings.threads))
        for j, part in enumerate(parts):
            if (round_no + j) % 2:
                bare_s = _timed(lambda p=part: run_all(session, p.feeds))
                engine_s = _timed(lambda p=part: engine.embed(p.texts))
            else:
                engine_s = _timed(lambda p=part: engine.embed(p.texts))
                bare_s = _timed(lambda p=part: run_all(session, p.feeds))
            engine_best[j], bare_best[j] = min(engine_best[j], engine_s), min(bare_best[j], bare_s)
        print(
            f"after round {round_no + 1}: engine {real / sum(engine_best):,.0f} tok/s, "
            f"bare {real / sum(bare_best):,.0f} tok/s, sgemm {gflops:.0f} GFLOP/s",
            file=sys.stderr,
        )

    engine_s, bare_s = sum(engine_best), sum(bare_best)
    useful = sum(flops_per_text(n) for n in lengths)
    result: dict[str, object] = {
        "engine_tokens_per_s": round(real / engine_s, 1),
        "bare_ort_tokens_per_s": round(real / bare_s, 1),
        "ratio": round(bare_s / engine_s, 4),
        "sgemm_gflops": round(gflops, 1),
        "roofline_fraction": round(useful / engine_s / (gflops * 1e9), 4),
        "bare_roofline_fraction": round(useful / bare_s / (gflops * 1e9), 4),
        "mflop_per_token": round(useful / real / 1e6, 2),
        "padding_overhead": round(padded / real - 1, 4),
        "model": args.model,
        "threads": settings.threads,
    }
    if not args.no_variants:
        variants = compare_variants(settings, store, args.rounds)
        if variants:
            result["variants"] = variants
    print(json.dumps(result))


if __name__ == "__main__":
    main()
