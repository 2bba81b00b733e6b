"""A sustained load on a real server: 32 concurrent clients for 60 s (ONNXVEC_LOAD_SECONDS) of mixed
embeddings and search requests must end with 0 errors, and the server must still be ready."""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiohttp
import httpx
import numpy as np
import pytest

from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents

pytestmark = pytest.mark.slow  # minutes: `pytest -m 'not slow'` leaves it out

CLIENTS = 32


async def _load(url: str, seconds: float) -> tuple[int, list[str], list[float]]:
    done, errors, latencies = 0, [], []
    stop_at = time.monotonic() + seconds
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=CLIENTS)) as http:

        async def client(n: int) -> None:
            nonlocal done
            i = n
            while time.monotonic() < stop_at:
                if i % 5 == 4:
                    path, body = "/v1/search", {"collection": "load", "query": f"question {i}", "k": 5}
                else:
                    path, body = "/v1/embeddings", {"input": [f"client {n} sentence {i} about load"] * (1 + i % 3)}
                started = time.monotonic()
                try:
                    async with http.post(path, json=body, timeout=aiohttp.ClientTimeout(total=30)) as response:
                        await response.read()
                        if response.status != 200:
                            errors.append(f"{path} {response.status}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{path} {type(exc).__name__}")
                latencies.append(time.monotonic() - started)
                done += 1
                i += CLIENTS

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return done, errors, latencies


def test_sixty_seconds_of_32_clients_without_an_error(api, engine, embedder) -> None:
    texts = [f"stored chunk {i} about load testing" for i in range(50)]
    with engine.begin() as conn:
        col = collections.create_collection(conn, "load", embedder.manifest.name, embedder.dims, "cosine")
        (doc,) = documents.register(conn, col, [SourceDocument("load", "mem://load", " ".join(texts), {})]).queued
        rows = [
            chunks.ChunkRow(i, t, str(i), 8, v)
            for i, (t, v) in enumerate(zip(texts, embedder.embed(texts).vectors, strict=True))
        ]
        chunks.write_chunks(conn, col, doc, rows)
    seconds = float(os.environ.get("ONNXVEC_LOAD_SECONDS", "60"))
    done, errors, latencies = asyncio.run(_load(api.url, seconds))
    ms = np.array(latencies) * 1000
    print(
        json.dumps(
            {
                "requests": done,
                "errors": len(errors),
                "requests_per_s": round(done / seconds, 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1),
            }
        )
    )
    assert errors == [] and done > CLIENTS * 10
    assert httpx.get(api.url + "/ready").status_code == 200
