"""Body size (413), backpressure (429), readiness and metrics on real servers."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest

from onnxvec.storage import collections


@pytest.fixture(scope="module")
def small(start_api):
    return start_api(max_request_bytes=2000, max_concurrent_requests=2, max_queued_inputs=64)


def test_body_over_the_limit_is_413(small) -> None:
    big = {"input": "word " * 1000}
    response = httpx.post(small.url + "/v1/embeddings", json=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit holds on the bytes actually read
        for _ in range(10):
            yield b" " * 500

    streamed = httpx.post(small.url + "/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert httpx.post(small.url + "/v1/embeddings", json={"input": "fits"}).status_code == 200


def _while_busy(server, probe) -> list:
    """Probe the server while a long request (many full-length inputs) keeps its engine busy for seconds."""
    long_inputs = ["busy " * 300] * 128  # each cut at the model's 256 tokens
    outcome: list[httpx.Response] = []
    busy = threading.Thread(
        target=lambda: outcome.append(
            httpx.post(server.url + "/v1/embeddings", json={"input": long_inputs}, timeout=120)
        )
    )
    busy.start()
    while busy.is_alive() and not server.app.state.service.queued_inputs():
        time.sleep(0.005)
    probes = []
    while busy.is_alive():
        probes.append(probe())
        time.sleep(0.02)
    busy.join()
    assert outcome[0].status_code == 200 and len(outcome[0].json()["data"]) == len(long_inputs)
    return probes


def test_queue_limit_is_429_with_retry_after(start_api) -> None:
    server = start_api(max_queued_inputs=64)
    probes = _while_busy(server, lambda: httpx.post(server.url + "/v1/embeddings", json={"input": "a probe"}))
    refused = [r for r in probes if r.status_code == 429]
    assert refused, [r.status_code for r in probes]
    assert refused[0].headers["retry-after"] == "1" and refused[0].json()["error"]["type"] == "rate_limit_error"
    assert {r.status_code for r in probes} <= {200, 429}


def test_in_flight_limit_is_429_but_health_answers(start_api) -> None:
    server = start_api(max_concurrent_requests=1, max_request_bytes=10**7)
    probes = _while_busy(server, lambda: httpx.get(server.url + "/v1/models"))
    assert any(r.status_code == 429 and r.headers.get("retry-after") for r in probes)
    assert httpx.get(server.url + "/health").status_code == 200
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

    def probe_with_client() -> object:
        try:
            return client.models.list()
        except openai.APIStatusError as exc:
            return exc

    assert any(isinstance(r, openai.RateLimitError) for r in _while_busy(server, probe_with_client))


def test_ready_and_metrics(api) -> None:
    ready = httpx.get(api.url + "/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "redis": True, "model": True}
    httpx.post(api.url + "/v1/embeddings", json={"input": "count me"})
    text = httpx.get(api.url + "/metrics").text
    for name in (
        'onnxvec_requests_total{method="POST",route="/v1/embeddings",status="200"}',
        'onnxvec_request_seconds_bucket{le="0.005",route="/v1/embeddings"}',
        'onnxvec_tokens_embedded_total{model="all-MiniLM-L6-v2"}',
        'onnxvec_batch_inputs_bucket{le="1.0",model="all-MiniLM-L6-v2"}',
        'onnxvec_queue_wait_seconds_count{model="all-MiniLM-L6-v2"}',
        "onnxvec_queue_depth ",
        "onnxvec_queued_inputs ",
    ):
        assert name in text, name


def test_ready_is_503_without_the_default_model(start_api) -> None:
    server = start_api(embedding_model="not-pulled-model")
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["model"] is False and "model" in ready.json()["error"]["message"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_metrics_label_routes_by_template(api) -> None:
    """Ids in paths must not become label values: one series per route, one for every unknown path."""
    for path in ("/v1/models/first-id", "/v1/models/second-id", "/no/such/route", "/another/unknown"):
        httpx.get(api.url + path)
    routes = {
        line.split('route="')[1].split('"')[0]
        for line in httpx.get(api.url + "/metrics").text.splitlines()
        if line.startswith("onnxvec_requests_total{")
    }
    assert "/v1/models/{model_id}" in routes and "unmatched" in routes
    assert not [route for route in routes if "-id" in route or "unknown" in route or "such" in route], routes


def test_langchains_default_batch_fits_the_body_limit(api) -> None:
    """LangChain sends 1,000 texts per request by default; ~4.6 KB chunks make a ~4.7 MB body."""
    from langchain_openai import OpenAIEmbeddings

    texts = [f"{i} " + "x" * 4600 for i in range(1000)]
    client = OpenAIEmbeddings(
        base_url=api.url + "/v1", api_key="unused", model="no-such-model", check_embedding_ctx_length=False
    )
    with pytest.raises(openai.NotFoundError):  # read whole and answered (unknown model), not refused with 413
        client.embed_documents(texts)


def test_bodies_held_at_once_are_bounded(start_api) -> None:
    """A body still arriving counts against ONNXVEC_MAX_BUFFERED_BYTES; past it others get 429 until it goes."""
    server = start_api(max_request_bytes=4000, max_buffered_bytes=3000)
    host, port = server.url.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)))
    head = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3500\r\n\r\n"
    slow.sendall(head.encode() + b" " * 2000)
    body = {"input": "fits " * 200}  # ~1 KB: with the 2,000 bytes held, over 3,000
    deadline = time.monotonic() + 10
    while (refused := httpx.post(server.url + "/v1/embeddings", json=body)).status_code != 429:
        assert time.monotonic() < deadline, refused.status_code  # the slow body has not been read yet
        time.sleep(0.05)
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "too_many_requests"
    slow.close()
    deadline = time.monotonic() + 10
    while (accepted := httpx.post(server.url + "/v1/embeddings", json=body)).status_code != 200:
        assert time.monotonic() < deadline, accepted.status_code  # the held bytes are released
        time.sleep(0.05)


def test_one_clients_flood_neither_starves_nor_outlives_it(start_api, engine, embedder) -> None:
    """100,000 inputs from one key: another key's single input, and its search, are answered in < 2 s
    (turns by client, not one FIFO); when the flooding client leaves, its queued inputs are dropped
    within 2 s."""
    with engine.begin() as conn:
        collections.create_collection(conn, "flood_search", embedder.manifest.name, embedder.dims)
    server = start_api(api_keys="sk-flood, sk-other", max_request_bytes=32 * 1024 * 1024)
    service = server.app.state.service
    body = json.dumps({"input": [f"item {i}" for i in range(100_000)]}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    flood = socket.create_connection((host, int(port)))
    head = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-flood\r\n"
    flood.sendall(f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    try:
        deadline = time.monotonic() + 60
        while service.queued_inputs() < 50_000:  # tokenized and queued
            assert time.monotonic() < deadline, service.queued_inputs()
            time.sleep(0.05)
        started = time.monotonic()
        other = httpx.post(
            server.url + "/v1/embeddings", json={"input": "me too"}, headers={"Authorization": "Bearer sk-other"}
        )
        waited = time.monotonic() - started
        assert other.status_code == 200 and waited < 2.0, (other.status_code, waited)
        started = time.monotonic()
        query = {"collection": "flood_search", "query": "me too"}
        searched = httpx.post(server.url + "/v1/search", json=query, headers={"Authorization": "Bearer sk-other"})
        search_waited = time.monotonic() - started
        assert searched.status_code == 200 and search_waited < 2.0, (searched.status_code, search_waited)
        assert service.queued_inputs() > 10_000  # the flood was still waiting all along
    finally:
        flood.close()
    started = time.monotonic()
    while service.queued_inputs():
        assert time.monotonic() - started < 2.0, service.queued_inputs()
        time.sleep(0.02)
    dropped = time.monotonic() - started
    figures = {"other_client_seconds": round(waited, 3), "other_search_seconds": round(search_waited, 3)}
    print(json.dumps(figures | {"dropped_after_seconds": round(dropped, 3)}))
