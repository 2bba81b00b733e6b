"""API throughput and latency under concurrent single-sentence requests, against the engine offline.

A real `onnxvec serve` process takes `--clients` concurrent clients, each sending one sentence per
request (as the official openai client does: base64) for `--seconds`. In the same run the engine
alone embeds the same sentences in its own offline batches. The ratio is the share of offline
engine throughput the server keeps while doing HTTP, JSON, micro-batching and encoding (goal >=
0.75, p99 < 250 ms). Client and server share this machine's cores, so the load generator is one
asyncio process with a single connection pool.

Usage: python bench/api.py [--clients 32] [--seconds 20] [--port 8091]   (last stdout line: JSON)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from onnxvec.config import Settings
from onnxvec.embedding.registry import EngineRegistry
from onnxvec.infra import embedded

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.helpers
from tests.helpers import serve  # noqa: E402  (the same starters as the tests)

WORDS = (
    "the a one every some data vector search query index table row column server client request reply "
    "fast slow small large new old first last good open shared local remote stored written read sent "
    "database model token batch worker queue document chunk answer question result score engine cache"
)


def sentences(count: int, seed: int = 11) -> list[str]:
    """Single sentences of 6 to 24 words, like search queries and short passages."""
    rng, words = random.Random(seed), WORDS.split()
    return [" ".join(rng.choices(words, k=rng.randint(6, 24))).capitalize() + "." for _ in range(count)]


def engine_offline(settings: Settings, texts: list[str], seconds: float) -> float:
    """Tokens per second of the engine embedding the sentences in its own batches, repeated for `seconds`."""
    engine = EngineRegistry(settings).engine(settings.embedding_model)
    engine.embed(texts[:256])  # warm up
    tokens, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tokens += sum(engine.embed(texts).tokens)
    return tokens / (time.perf_counter() - started)


async def load(url: str, texts: list[str], clients: int, seconds: float) -> tuple[list[float], int, int]:
    """Latencies (s), prompt tokens and errors of `clients` request loops running for `seconds`.

    aiohttp, not httpx: its C parser costs the shared cores about a quarter of httpx's CPU per
    request, so the load generator takes less of the machine away from the server it measures.
    """
    latencies: list[float] = []
    counts = {"tokens": 0, "errors": 0}
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients)) as http:
        async with http.post("/v1/embeddings", json={"input": "warm up"}) as response:
            await response.read()
        stop_at = time.perf_counter() + seconds

        async def client(n: int) -> None:
            i = n
            while time.perf_counter() < stop_at:
                body = {"input": texts[i % len(texts)], "model": "", "encoding_format": "base64"}
                started = time.perf_counter()
                async with http.post("/v1/embeddings", json=body) as response:
                    payload = await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
                    counts["tokens"] += json.loads(payload)["usage"]["prompt_tokens"]
                else:
                    counts["errors"] += 1
                i += clients

        await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies, counts["tokens"], counts["errors"]


def mean_batch(url: str) -> float:
    """Mean inputs per forward, from the server's own metrics."""
    lines = httpx.get(url + "/metrics").text.splitlines()

    def total(name: str) -> float:
        return sum(float(line.split()[-1]) for line in lines if line.startswith(name + "{"))

    return total("onnxvec_batch_inputs_sum") / max(total("onnxvec_batch_inputs_count"), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--sentences", type=int, default=4000)
    args = parser.parse_args()

    settings = Settings()
    embedded.ensure_services(settings)
    texts = sentences(args.sentences)
    log = Path(settings.home) / "bench-api-server.log"
    server = serve(settings, args.port, log)
    url = f"http://127.0.0.1:{args.port}"
    try:
        cpu = time.process_time()
        latencies, tokens, errors = asyncio.run(load(url, texts, args.clients, args.seconds))
        client_cpu = time.process_time() - cpu
        batch = mean_batch(url)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    engine_tps = engine_offline(settings, texts, min(args.seconds, 10))
    ms = np.array(latencies) * 1000
    result = {
        "requests_per_s": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "tokens_per_s": round(tokens / args.seconds, 1),
        "engine_tokens_per_s": round(engine_tps, 1),
        "ratio": round(tokens / args.seconds / engine_tps, 4),
        "clients": args.clients,
        "errors": errors,
        "mean_batch": round(batch, 1),
        "client_cpu_share": round(client_cpu / args.seconds / (os.cpu_count() or 1), 3),
        "threads": settings.threads,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
