"""Prefill speed and memory of a chat model as built here (logits for the last position only) against
the builder's own graph (logits for every position), same weights, same prompt.

Both graphs are made from the stored model's (with or without the Slice that
onnxvec/models/build/logits.py puts before the language-model head, whichever way the model was
built) and share its weights file, hard-linked into scratch folders under ONNXVEC_HOME/bench. Each
variant runs in a process of its own, alternating, best of --rounds kept (the machine is shared and
noisy): prefill tokens/s for each prompt length, decode tokens/s, peak RSS, and whether the greedy
tokens are the same.

Usage: python bench/prefill.py [--model NAME] [--tokens 1000 4000] [--rounds 3]   (last stdout line: JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from onnxvec.config import Settings
from onnxvec.models.build.logits import SLICE_NAME, keep_last_logits
from onnxvec.models.catalog import CATALOG
from onnxvec.models.pull import pull
from onnxvec.models.store import ModelStore

DECODE_TOKENS = 32


def variant(model: Path, out: Path, *, last_position: bool) -> Path:
    """A copy of the model's graph whose head sees every position (the builder's own graph) or, with
    `last_position`, the last one only (what `models pull`/`build` write now); weights hard-linked."""
    import onnx

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for item in model.iterdir():
        if item.name.endswith(".data"):
            os.link(item, out / item.name)  # onnxruntime wants the weights inside the model's folder
        elif item.is_file():
            shutil.copy(item, out / item.name)
    graph_file = out / "model.onnx"
    graph = onnx.load(str(graph_file), load_external_data=False)
    for cut in [n for n in graph.graph.node if n.name == SLICE_NAME]:  # a model built since the Slice came
        for node in graph.graph.node:
            node.input[:] = [cut.input[0] if name == cut.output[0] else name for name in node.input]
        graph.graph.node.remove(cut)
        (logits,) = [o for o in graph.graph.output if o.name == "logits"]
        logits.type.tensor_type.shape.dim[1].dim_param = "sequence_length"
    onnx.save(graph, str(graph_file))
    if last_position and not keep_last_logits(graph_file):
        raise SystemExit(f"{model}: no /lm_head/ MatMul to put the Slice before")
    return out


def measure(folder: str, lengths: list[int]) -> dict:
    """In this process: prefill tokens/s per prompt length, decode tokens/s, greedy tokens, peak RSS."""
    import onnxruntime_genai as og

    model = og.Model(folder)
    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text() * 4
    ids = list(og.Tokenizer(model).encode(text))
    result: dict = {"prefill": {}}
    for length in lengths:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=length + DECODE_TOKENS, do_sample=False)
        generator = og.Generator(model, params)
        started = time.perf_counter()
        generator.append_tokens(ids[:length])
        result["prefill"][str(length)] = length / (time.perf_counter() - started)
        started, tokens = time.perf_counter(), []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        result["decode"] = len(tokens) / (time.perf_counter() - started)
        result["tokens"] = tokens
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="chat model (default: ONNXVEC_CHAT_MODEL)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[1000, 4000], help="prompt lengths")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a model folder measured in this process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.tokens)))
        return
    settings = Settings()
    name = args.model or settings.chat_model
    store = ModelStore(settings.models_dir)
    if name in CATALOG:
        pull(store, name)
    scratch = settings.home / "bench" / f"prefill-{name}"
    ours = variant(store.path(name), scratch / "last-position", last_position=True)
    reference = variant(store.path(name), scratch / "every-position", last_position=False)
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for label, folder in (("last_position", ours), ("every_position", reference)):
            command = [sys.executable, __file__, "--child", str(folder), "--tokens", *map(str, args.tokens)]
            run = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            kept = best.setdefault(label, run)
            for length, rate in run["prefill"].items():
                kept["prefill"][length] = max(kept["prefill"][length], rate)
            kept["decode"] = max(kept["decode"], run["decode"])
            print(label, {k: round(v) for k, v in run["prefill"].items()}, round(run["decode"], 1), run["peak_rss_mb"])
    shutil.rmtree(scratch)
    ours_, ref = best["last_position"], best["every_position"]
    summary = {
        "model": name,
        "prefill_tokens_per_s": {k: round(v, 1) for k, v in ours_["prefill"].items()},
        "reference_prefill_tokens_per_s": {k: round(v, 1) for k, v in ref["prefill"].items()},
        "prefill_ratio": {k: round(ours_["prefill"][k] / ref["prefill"][k], 2) for k in ref["prefill"]},
        "decode_ratio": round(ours_["decode"] / ref["decode"], 2),
        "peak_rss_mb": ours_["peak_rss_mb"],
        "reference_peak_rss_mb": ref["peak_rss_mb"],
        "same_tokens": ours_["tokens"] == ref["tokens"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
