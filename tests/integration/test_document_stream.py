"""POST /v1/collections/{name}/documents/stream against a real server, Postgres, Redis and worker: an NDJSON
body many times ONNXVEC_MAX_REQUEST_BYTES is registered in slices while it still arrives, a bad, oversized,
stalled or abandoned stream keeps the documents before the fault and says how many, and an open stream
counts against ONNXVEC_MAX_BUFFERED_BYTES like any body."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import httpx

from tests.integration.test_collections_http import refused, search

CAT = "The cat sleeps on the warm windowsill all afternoon."
RUST = "Rust's borrow checker rejects two mutable references to one value."


def line(doc_id: str, text: str, **metadata: object) -> bytes:
    return json.dumps({"id": doc_id, "text": text, "metadata": metadata}).encode() + b"\n"


def pending(url: str, collection: str) -> int:
    return httpx.get(f"{url}/v1/collections/{collection}").json()["documents"].get("pending", 0)


def open_stream(url: str, collection: str) -> socket.socket:
    """A POST to the stream route with a chunked body, its headers sent and its body not yet."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = f"POST /v1/collections/{collection}/documents/stream HTTP/1.1\r\nHost: x\r\n"
    sock.sendall(f"{head}Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    return sock


def send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def answer(sock: socket.socket) -> tuple[int, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


def test_a_stream_past_the_request_limit_is_registered_while_it_arrives(start_api) -> None:
    """3,000 documents (~10x ONNXVEC_MAX_REQUEST_BYTES, which the JSON route refuses with 413): the first
    slices are registered before the rest is sent; a later line replaces an earlier one with its id;
    blank lines are skipped and a last line needs no newline; posting it again queues only what changed."""
    server = start_api(max_request_bytes=64 * 1024)
    assert httpx.post(server.url + "/v1/collections", json={"name": "streamed"}).status_code == 201
    lines = [line(f"doc-{i}", f"document {i} " + "words " * 30, n=i) for i in range(3000)]
    assert sum(map(len, lines)) > 10 * 64 * 1024
    as_json = {"documents": [json.loads(x) for x in lines[:1000]]}
    too_large = httpx.post(server.url + "/v1/collections/streamed/documents", json=as_json)
    refused(too_large, 413, None, "request_too_large")

    def body() -> Iterator[bytes]:
        for start in range(0, 1500, 100):
            yield b"".join(lines[start : start + 100])
        deadline = time.monotonic() + 60
        while pending(server.url, "streamed") < 1000:  # registered while the body is still arriving
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for start in range(1500, 3000, 100):
            yield b"".join(lines[start : start + 100])
        yield b"\n  \n" + line("doc-0", "document zero, changed", n="last").rstrip(b"\n")

    url = server.url + "/v1/collections/streamed/documents/stream"
    posted = httpx.post(url, content=body(), headers={"Content-Type": "application/x-ndjson"}, timeout=120)
    assert posted.status_code == 202, posted.text
    states = {"pending": 3000, "processing": 0, "done": 0, "failed": 0}
    assert posted.json() == {
        "object": "collection.documents",
        "collection": "streamed",
        "queued": 3000,
        "unchanged": 0,
        "failed": 0,
        "documents": states,
        "complete": False,
    }
    assert httpx.get(server.url + "/v1/collections/streamed/documents/doc-0").json()["metadata"] == {"n": "last"}
    again = httpx.post(url, content=b"".join(lines) + lines[1], timeout=120).json()
    # doc-0 goes back to its first text; doc-1, repeated in a later slice, is registered again: unchanged twice
    assert (again["queued"], again["unchanged"]) == (1, 3000)
    assert httpx.delete(server.url + "/v1/collections/streamed").status_code == 200


def test_a_bad_line_names_itself_and_keeps_the_lines_before_it(start_api, start_worker) -> None:
    server = start_api(max_request_bytes=4096, max_document_bytes=1000, documents_wait_seconds=120)
    client = httpx.Client(base_url=server.url, timeout=60)
    url = "/v1/collections/stream_checked/documents/stream"
    refused(client.post(url, content=line("a", CAT)), 404, "collection", "collection_not_found")
    assert client.post("/v1/collections", json={"name": "stream_checked"}).status_code == 201

    good = b"".join(line(f"ok-{i}", f"{CAT} ({i})").replace(b"\n", b"\r\n") for i in range(5))  # CRLF lines
    message = refused(
        client.post(url, content=good + b'{"id": "bad"\n' + line("after", RUST)), 400, "line 6", "invalid_value"
    )
    assert (
        message
        == "Line 6 is not valid JSON. The 5 documents before it were registered; sending them again changes nothing."
    )
    assert pending(server.url, "stream_checked") == 5
    cases = [
        (b'{"id": "a", "text": 3}', "line 1.text"),
        (b'{"id": "a", "text": "x", "extra": 1}', "line 1.extra"),
        (b'{"id": "", "text": "x"}', "line 1.id"),
        (b"[1]", "line 1"),
        (b'{"id": "a", "text": "\xff\xfe"}', "line 1"),  # not UTF-8: not JSON
        (json.dumps({"id": "a", "text": "nul\u0000"}).encode(), "line 1.text"),
    ]
    for bad, param in cases:
        message = refused(client.post(url, content=bad + b"\n" + line("after", RUST)), 400, param, "invalid_value")
        assert message.startswith("Line 1") and message.endswith("No document was registered."), message
    long = line("long", "x" * 5000)
    message = refused(client.post(url, content=line("before", CAT) + long), 413, "line 2", "request_too_large")
    assert message.startswith("Line 2 exceeds 4096 bytes. The 1 documents before it were registered")
    refused(client.post(url, content=b"\n \n"), 400, None, "invalid_value")
    assert pending(server.url, "stream_checked") == 6  # "before"; nothing after a bad line

    oversized = client.post(url, content=line("big", "word " * 300) + line("small", RUST)).json()
    assert (oversized["queued"], oversized["failed"]) == (1, 1)  # text over ONNXVEC_MAX_DOCUMENT_BYTES: recorded
    big = client.get("/v1/collections/stream_checked/documents/big").json()
    assert big["state"] == "failed" and big["error"] == "text is over the 1,000 bytes limit", big

    start_worker()
    waited = client.post(url + "?wait=true", content=line("cat", CAT) + line("rust", RUST), timeout=180)
    assert waited.status_code == 200 and waited.json()["complete"] is True, waited.text
    assert search(client, "stream_checked", "where does the cat nap")[0] in {"cat", *(f"ok-{i}" for i in range(5))}
    assert search(client, "stream_checked", "borrow checker mutable references")[0] in {"rust", "small"}


def test_a_stalled_or_abandoned_stream_keeps_what_arrived(start_api) -> None:
    """Nothing for ONNXVEC_BODY_TIMEOUT_SECONDS: 408 naming what was registered; a client that leaves
    mid-line: the whole lines the server read are registered, the cut one is not."""
    server = start_api(body_timeout_seconds=1)
    assert httpx.post(server.url + "/v1/collections", json={"name": "stream_stalled"}).status_code == 201
    stalled = open_stream(server.url, "stream_stalled")
    send(stalled, line("one", CAT) + line("two", RUST))
    started = time.monotonic()
    status, body = answer(stalled)
    assert status == 408 and time.monotonic() - started < 10, body
    assert body["error"]["code"] == "request_timeout"
    assert body["error"]["message"].endswith(
        "The 2 documents before it were registered; sending them again changes nothing."
    )
    stalled.close()

    left = open_stream(server.url, "stream_stalled")
    send(left, line("three", CAT) + line("four", RUST) + line("five", CAT)[:20])
    time.sleep(1)  # read by the route (what uvicorn still buffers when the client goes is dropped unread)
    left.close()
    deadline = time.monotonic() + 10
    while pending(server.url, "stream_stalled") < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    assert pending(server.url, "stream_stalled") == 4
    assert httpx.get(server.url + "/v1/collections/stream_stalled/documents/five").status_code == 404


def test_an_open_stream_counts_as_one_body_held(start_api) -> None:
    """While a stream is open it holds ONNXVEC_MAX_REQUEST_BYTES of ONNXVEC_MAX_BUFFERED_BYTES: another
    stream, or a body that would pass the bound, gets 429 until it ends."""
    server = start_api(max_request_bytes=4000, max_buffered_bytes=6000)
    assert httpx.post(server.url + "/v1/collections", json={"name": "stream_held"}).status_code == 201
    first = open_stream(server.url, "stream_held")
    send(first, line("one", CAT))
    url = server.url + "/v1/collections/stream_held/documents"
    deadline = time.monotonic() + 10
    while (second := httpx.post(url + "/stream", content=line("two", RUST))).status_code != 429:
        assert second.status_code == 202 and time.monotonic() < deadline, second.text  # not yet opened
        time.sleep(0.05)
    assert second.json()["error"]["code"] == "too_many_requests" and second.headers["Retry-After"] == "1"
    body = {"documents": [{"id": "three", "text": "word " * 500}]}  # 2,500 bytes: over with the stream's 4,000
    refused_json = httpx.post(url, json=body)
    assert refused_json.status_code == 429, refused_json.text
    send(first, line("four", CAT))
    first.sendall(b"0\r\n\r\n")
    status, accepted = answer(first)
    assert status == 202 and accepted["queued"] == 2, accepted
    assert httpx.post(url + "/stream", content=line("two", RUST)).status_code == 202
    assert httpx.post(url, json=body).status_code == 202
