"""Collections and documents over HTTP, against a real server, Postgres, Redis and worker: the CRUD round
trip in OpenAI's error bodies, documents found by search once `?wait=true` answers, idempotent posts,
deletes that search sees at once, the keys' limits on every new route, and `collections rm` /
`documents rm` on the command line."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.infra import db
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import collections, documents, keys
from tests.helpers import onnxvec

CAT = "The cat sleeps on the warm windowsill all afternoon."
RUST = "Rust's borrow checker rejects two mutable references to one value."


def refused(response: httpx.Response, status: int, param: str | None, code: str | None) -> str:
    """Assert OpenAI's error body with these fields; returns its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert (error["param"], error["code"]) == (param, code), error
    assert error["type"] == ("permission_error" if status == 403 else "invalid_request_error")
    return error["message"]


def search(client: httpx.Client, collection: str, query: str) -> list[str]:
    response = client.post("/v1/search", json={"collection": collection, "query": query, "k": 5, "mode": "vector"})
    assert response.status_code == 200, response.text
    return [hit["external_id"] for hit in response.json()["data"]]


def test_collections_and_documents_round_trip(api, start_worker) -> None:
    start_worker()
    client = httpx.Client(base_url=api.url, timeout=60)
    body = {"name": "http_docs", "metric": "cosine", "chunk_tokens": 64, "chunk_overlap": 8, "language": "english"}
    created = client.post("/v1/collections", json=body)
    assert created.status_code == 201, created.text
    assert created.json() | {"documents": {}} in client.get("/v1/collections").json()["data"]
    assert created.json()["model"] == "all-MiniLM-L6-v2" and created.json()["chunk_tokens"] == 64

    assert "already exists" in refused(client.post("/v1/collections", json=body), 400, "name", "invalid_value")
    refused(client.post("/v1/collections", json={"name": "m", "metric": "hamming"}), 400, "metric", "invalid_value")
    refused(client.post("/v1/collections", json={"name": "m", "model": "nope"}), 404, "model", "model_not_found")
    overlap = {"name": "m", "chunk_tokens": 16, "chunk_overlap": 16}
    refused(client.post("/v1/collections", json=overlap), 400, "chunk_overlap", "invalid_value")
    refused(client.post("/v1/collections", json={"name": "m", "language": "klingon"}), 400, "language", "invalid_value")
    refused(client.post("/v1/collections", json={"name": "m", "size": 3}), 400, "size", "invalid_value")

    docs = {"documents": [{"id": "cat", "text": CAT, "metadata": {"kind": "pet"}}, {"id": "rust/1", "text": RUST}]}
    posted = client.post("/v1/collections/http_docs/documents?wait=true", json=docs)
    assert posted.status_code == 200, posted.text
    done = {"pending": 0, "processing": 0, "done": 2, "failed": 0}
    assert posted.json() == {
        "object": "collection.documents",
        "collection": "http_docs",
        "queued": 2,
        "unchanged": 0,
        "failed": 0,
        "documents": done,
        "complete": True,
    }
    assert search(client, "http_docs", "where does the cat nap")[0] == "cat"
    again = client.post("/v1/collections/http_docs/documents?wait=true", json=docs).json()
    assert (again["queued"], again["unchanged"], again["complete"]) == (0, 2, True)
    docs["documents"][1]["text"] = RUST + " Lifetimes say how long a reference lives."
    changed = client.post("/v1/collections/http_docs/documents?wait=true", json=docs).json()
    assert (changed["queued"], changed["unchanged"], changed["documents"]["done"]) == (1, 1, 1)

    collection = client.get("/v1/collections/http_docs").json()
    assert collection["documents"] == done and collection["chunks"] == 2
    document = client.get("/v1/collections/http_docs/documents/cat").json()
    assert {k: document[k] for k in ("object", "id", "state", "error", "metadata", "chunks", "source")} == {
        "object": "document",
        "id": "cat",
        "state": "done",
        "error": None,
        "metadata": {"kind": "pet"},
        "chunks": 1,
        "source": "api",
    }
    assert client.get("/v1/collections/http_docs/documents/rust/1").json()["id"] == "rust/1"  # ids with slashes

    deleted = client.delete("/v1/collections/http_docs/documents/cat")
    assert deleted.json() == {"id": "cat", "object": "document.deleted", "deleted": True}
    assert "cat" not in search(client, "http_docs", "where does the cat nap")
    for method in ("GET", "DELETE"):
        gone = client.request(method, "/v1/collections/http_docs/documents/cat")
        refused(gone, 404, "document_id", "document_not_found")

    dropped = client.delete("/v1/collections/http_docs")
    assert dropped.json() == {"id": "http_docs", "object": "collection.deleted", "deleted": True}
    for method, path in [("GET", "/v1/collections/http_docs"), ("DELETE", "/v1/collections/http_docs")]:
        refused(client.request(method, path), 404, "collection", "collection_not_found")
    post = client.post("/v1/collections/http_docs/documents", json=docs)
    refused(post, 404, "collection", "collection_not_found")
    searched = client.post("/v1/search", json={"collection": "http_docs", "query": "cat"})
    refused(searched, 404, "collection", "collection_not_found")


def test_documents_are_validated(api) -> None:
    client = httpx.Client(base_url=api.url, timeout=60)
    assert client.post("/v1/collections", json={"name": "http_checked"}).status_code == 201
    url = "/v1/collections/http_checked/documents"
    cases = [
        ([{"id": "", "text": "x"}], "documents.0.id"),
        ([{"id": "a", "text": 3}], "documents.0.text"),
        ([{"id": "a", "text": "x", "metadata": ["not", "an", "object"]}], "documents.0.metadata"),
        ([{"id": "a", "text": "x", "metadata": {"k": "nul\u0000"}}], "documents.0.metadata"),
        ([{"id": "a", "text": "nul\u0000"}], "documents.0.text"),
        ([{"id": str(i), "text": "x"} for i in range(1001)], "documents"),
        ([], "documents"),
    ]
    for items, param in cases:
        refused(client.post(url, json={"documents": items}), 400, param, "invalid_value")
    refused(client.post(url, json=[1]), 400, None, "invalid_value")
    oversized = client.post(url, content=b"x" * (api.app.state.settings.max_request_bytes + 1))
    refused(oversized, 413, None, "request_too_large")
    assert client.get("/v1/collections/http_checked").json()["documents"]["pending"] == 0  # nothing registered
    twice = client.post(url, json={"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}).json()
    assert (twice["queued"], twice["unchanged"]) == (1, 0)  # one document: the later text replaces the earlier
    assert client.post(url, json={"documents": [{"id": "a", "text": "y"}]}).json()["unchanged"] == 1


def test_keys_reach_only_what_they_may(start_api, new_database) -> None:
    """A read-only key is refused every writing route (403); a scoped key meets other collections as
    missing (404) and creates only those its grant names (403 otherwise). No worker runs here, so
    `?wait=true` answers 202 with the documents still pending once ONNXVEC_DOCUMENTS_WAIT_SECONDS pass."""
    url = new_database("collections_http_keys")
    database = db.make_engine(url)
    with database.begin() as conn:
        _, reader = keys.create(conn, "reader", read_only=True)
        _, scoped = keys.create(conn, "scoped", ["mine", "later"])
        _, full = keys.create(conn, "full")
    database.dispose()
    server = start_api(database_url=url, documents_wait_seconds=1)

    def call(key: str, method: str, path: str, body: object = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.request(method, server.url + path, json=body, headers=headers, timeout=60)

    for name in ("mine", "theirs"):
        assert call(full, "POST", "/v1/collections", {"name": name}).status_code == 201
    doc = {"documents": [{"id": "a", "text": CAT}]}
    writes = [
        ("POST", "/v1/collections", {"name": "new"}),
        ("DELETE", "/v1/collections/mine", None),
        ("POST", "/v1/collections/mine/documents", doc),
        ("POST", "/v1/collections/mine/documents/stream", doc["documents"][0]),
        ("DELETE", "/v1/collections/mine/documents/a", None),
        ("POST", "/v1/collections/mine/versions", {"metric": "l2"}),
        ("POST", "/v1/collections/mine/versions/1/activate", None),
        ("POST", "/v1/collections/mine/versions/1/pause", None),
    ]
    for method, path, body in writes:
        refused(call(reader, method, path, body), 403, None, "read_only_key")
    assert call(reader, "GET", "/v1/collections/mine").status_code == 200
    assert call(reader, "GET", "/v1/collections/mine/versions").json()["data"][0]["active"] is True

    hidden = [
        ("GET", "/v1/collections/theirs", None),
        ("DELETE", "/v1/collections/theirs", None),
        ("POST", "/v1/collections/theirs/documents", doc),
        ("POST", "/v1/collections/theirs/documents/stream", doc["documents"][0]),
        ("GET", "/v1/collections/theirs/documents/a", None),
        ("DELETE", "/v1/collections/theirs/documents/a", None),
        ("GET", "/v1/collections/theirs/versions", None),
        ("POST", "/v1/collections/theirs/versions", {"metric": "l2"}),
        ("POST", "/v1/collections/theirs/versions/1/resume", None),
    ]
    for method, path, body in hidden:
        message = refused(call(scoped, method, path, body), 404, "collection", "collection_not_found")
        assert message == "collection 'theirs' does not exist"
    refused(call(scoped, "POST", "/v1/collections", {"name": "other"}), 403, "name", "forbidden")
    assert call(scoped, "POST", "/v1/collections", {"name": "later"}).status_code == 201

    waited = call(scoped, "POST", "/v1/collections/mine/documents?wait=true", doc)
    assert waited.status_code == 202, waited.text
    assert waited.json()["documents"]["pending"] == 1 and waited.json()["complete"] is False
    assert call(scoped, "GET", "/v1/collections/mine/documents/a").json()["state"] == "pending"
    assert call(full, "GET", "/v1/collections/theirs").json()["documents"]["pending"] == 0


def test_rm_commands(settings: Settings, engine: Engine) -> None:
    assert onnxvec(settings, "collections", "create", "cli_rm").returncode == 0
    with engine.begin() as conn:
        col = collections.get_collection(conn, "cli_rm")
        documents.register(conn, col, [SourceDocument(i, "mem://", "text " + i, {}) for i in ("a", "b", "c")])
    partly = onnxvec(settings, "documents", "rm", "cli_rm", "a", "b", "missing")
    assert partly.returncode == 1 and "removed 2 of 3 documents" in partly.stdout, partly.stderr
    with engine.connect() as conn:
        assert documents.describe(conn, col, "a") is None and documents.describe(conn, col, "c") is not None
    assert onnxvec(settings, "collections", "rm", "cli_rm").returncode == 0
    again = onnxvec(settings, "collections", "rm", "cli_rm")
    assert again.returncode == 1 and "does not exist" in again.stderr
