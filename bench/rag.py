"""Retrieval-augmented answers measured on a real manual nobody here wrote.

The corpus is the PostgreSQL 15 HTML manual as Debian ships it offline (`apt-get download` of the
package pinned with its sha256 in bench/rag_questions.json, `dpkg -x`; kept in ONNXVEC_HOME/bench,
outside the repository). A real worker ingests its pages into a collection; a real `onnxvec serve`
answers every question of bench/rag_questions.json twice: /v1/search (k = 10) for retrieval, and
/v1/chat/completions over the collection for the answer, both in the search mode given (--mode;
--retrieval-only skips the answers, ~10 minutes).

Printed: retrieval hit@1, hit@5 and MRR@10 (a hit is a chunk of a page that states the answer),
answer accuracy (one of the question's facts is in the answer), citations (the sources the answer
uses): accuracy (one is such a page), precision (the share of them that are) and the answers citing
any; how often such a page was in the prompt at all; answers that loop (a phrase repeated over and
over), latency and answer tokens/s.

The collection's name carries a hash of the code that turns pages into chunks, so a change to how
pages are read or chunked is measured on a fresh collection, and a re-run of the same code re-uses it.

Usage: python bench/rag.py [--mode vector|text|hybrid] [--retrieval-only] [--model NAME] [--k 4]
       [--max-tokens 128] [--limit N] [--port 8093]
       (last stdout line: one JSON object; --show prints every answer)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from onnxvec.config import SEARCH_MODES, Settings
from onnxvec.infra import broker, db, embedded
from onnxvec.ingest import register
from onnxvec.models.catalog import CATALOG
from onnxvec.models.pull import pull
from onnxvec.models.store import ModelStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.helpers
from tests.helpers import WorkerProcess, serve  # noqa: E402  (the same starters as the tests)

QUESTIONS = Path(__file__).with_name("rag_questions.json")
REPOSITORY = Path(__file__).resolve().parents[1]
# the code that decides what a page's chunks are (missing files are skipped)
CHUNKING = (
    "onnxvec/sources/files.py",
    "onnxvec/sources/html.py",
    "onnxvec/embedding/chunker.py",
    "onnxvec/ingest/pipeline.py",
)


def corpus(settings: Settings, pinned: dict[str, Any]) -> Path:
    """The manual's HTML folder, downloaded and unpacked once (the package's sha256 checked)."""
    root = settings.home / "bench" / f"{pinned['package']}_{pinned['version']}"
    html = root / "extracted" / pinned["html_dir"]
    if html.is_dir():
        return html
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", f"{pinned['package']}={pinned['version']}"], cwd=root, check=True)
    (deb,) = root.glob(f"{pinned['package']}_*.deb")
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    if digest != pinned["sha256"]:
        raise SystemExit(f"{deb.name}: sha256 {digest}, expected {pinned['sha256']}")
    subprocess.run(["dpkg", "-x", str(deb), str(root / "extracted")], check=True)
    return html


def ingested(settings: Settings, html: Path, collection: str, log: Path) -> float:
    """Every page in the collection (a re-run registers them unchanged); seconds it took."""
    engine = db.make_engine(embedded.ensure_services(settings).database_url)
    db.upgrade(engine)
    app = broker.make_app(settings, embedded.ensure_services(settings).redis_url)
    worker = WorkerProcess(settings, log)
    started = time.perf_counter()
    try:
        report = register.ingest(settings, engine, app, [str(html)], collection)
        register.wait(engine, None, report.queued, lambda counts: None, poll_seconds=1)
    finally:
        worker.kill(signal.SIGTERM)
    return time.perf_counter() - started


def chunking_hash() -> str:
    """A short hash of the chunking code, for the collection's name."""
    digest = hashlib.sha256()
    for name in CHUNKING:
        path = REPOSITORY / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:8]


def page(source: str) -> str:
    return source.rstrip("/").rsplit("/", 1)[-1]


def looped(answer: str) -> bool:
    """A generation stuck in a loop: a word run 6 times in a row, or one 3-word phrase 4 times or more."""
    words = re.findall(r"\w+", answer.lower())
    if any(len(set(words[i : i + 6])) == 1 for i in range(len(words) - 5)):
        return True
    phrases: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 2):
        phrase = tuple(words[i : i + 3])
        phrases[phrase] = phrases.get(phrase, 0) + 1
    return max(phrases.values(), default=0) >= 4


def found(facts: list[str], answer: str) -> bool:
    flat = " ".join(answer.lower().split())
    return any(" ".join(fact.lower().split()) in flat for fact in facts)


def ask(client: httpx.Client, question: dict[str, Any], collection: str, args: argparse.Namespace) -> dict[str, Any]:
    """One question: its retrieval ranks and (unless --retrieval-only) its answer, judged."""
    pages = set(question["pages"])
    body = {"collection": collection, "query": question["question"], "k": 10, "mode": args.mode}
    hits = client.post("/v1/search", json=body)
    hits.raise_for_status()
    ranks = [rank for rank, hit in enumerate(hits.json()["data"], start=1) if page(hit["source"]) in pages]
    retrieved = {"id": question["id"], "first_hit": ranks[0] if ranks else None}
    if args.retrieval_only:
        return retrieved
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": question["question"]}],
        "collection": collection,
        "k": args.k,
        "mode": args.mode,
        "max_tokens": args.max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    reply = client.post("/v1/chat/completions", json=body)
    seconds = time.perf_counter() - started
    reply.raise_for_status()
    answer = reply.json()
    text = answer["choices"][0]["message"]["content"] or ""
    cited = [page(c["source"]) for c in answer["citations"]]  # the sources the answer uses
    in_prompt = {page(c["source"]) for c in answer["retrieved"]}  # every source in the prompt
    return retrieved | {
        "answered": found(question["facts"], text),
        "cited": bool(set(cited) & pages),
        "citations": len(cited),
        "right_citations": sum(c in pages for c in cited),
        "in_prompt": bool(in_prompt & pages),
        "looped": looped(text),
        "seconds": seconds,
        "tokens": answer["usage"]["completion_tokens"],
        "answer": text,
    }


def summary(results: list[dict[str, Any]], args: argparse.Namespace, ingest_s: float, name: str) -> dict[str, Any]:
    n = len(results)
    firsts = [r["first_hit"] for r in results]
    retrieval = {
        "mode": args.mode,
        "collection": name,
        "questions": n,
        "hit_at_1": round(sum(f == 1 for f in firsts if f) / n, 3),
        "hit_at_5": round(sum(f <= 5 for f in firsts if f) / n, 3),
        "mrr_at_10": round(sum(1 / f for f in firsts if f) / n, 3),
        "ingest_s": round(ingest_s, 1),
    }
    if args.retrieval_only:
        return retrieval
    seconds = np.array([r["seconds"] for r in results])
    cited = sum(r["citations"] for r in results)
    return retrieval | {
        "model": args.model,
        "answer_accuracy": round(sum(r["answered"] for r in results) / n, 3),
        "citation_accuracy": round(sum(r["cited"] for r in results) / n, 3),
        "citation_precision": round(sum(r["right_citations"] for r in results) / max(1, cited), 3),
        "answers_citing": round(sum(r["citations"] > 0 for r in results) / n, 3),
        "right_answers_citing_nothing": sum(r["answered"] and not r["citations"] for r in results),
        "answer_page_in_prompt": round(sum(r["in_prompt"] for r in results) / n, 3),
        "loops": sum(r["looped"] for r in results),
        "latency_p50_s": round(float(np.percentile(seconds, 50)), 2),
        "latency_p90_s": round(float(np.percentile(seconds, 90)), 2),
        "answer_tokens_per_s": round(sum(r["tokens"] for r in results) / float(seconds.sum()), 1),
        "k": args.k,
        "max_tokens": args.max_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=SEARCH_MODES, help="search mode of retrieval (default: ONNXVEC_SEARCH_MODE)")
    parser.add_argument("--retrieval-only", action="store_true", help="only /v1/search: no answers")
    parser.add_argument("--model", default=None, help="chat model (default: ONNXVEC_CHAT_MODEL)")
    parser.add_argument("--k", type=int, default=4, help="chunks the chat retrieves")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--show", action="store_true", help="print every answer")
    args = parser.parse_args()
    settings = Settings()
    args.model = args.model or settings.chat_model
    args.mode = args.mode or settings.search_mode
    spec = json.loads(QUESTIONS.read_text())
    questions = spec["questions"][: args.limit]
    store = ModelStore(settings.models_dir)
    pull(store, settings.embedding_model)
    if args.model in CATALOG and not args.retrieval_only:
        pull(store, args.model)
    html = corpus(settings, spec["corpus"])
    collection = f"rag_{spec['corpus']['package'].replace('-', '_')}_{chunking_hash()}"
    ingest_s = ingested(settings, html, collection, settings.home / "bench-rag-worker.log")
    server = serve(settings, args.port, settings.home / "bench-rag-server.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=600) as client:
            results = [ask(client, q, collection, args) for q in questions]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    for r in results:
        line = f"q{r['id']:>3} hit@{r['first_hit'] or '-':<3}"
        if not args.retrieval_only:
            mark = ("A" if r["answered"] else "-") + ("C" if r["cited"] else "-") + ("L" if r["looped"] else "-")
            line += f" {mark} {r['seconds']:5.1f} s" + (f"  {r['answer']!r}" if args.show else "")
        print(line)
    print(json.dumps(summary(results, args, ingest_s, collection)))


if __name__ == "__main__":
    main()
