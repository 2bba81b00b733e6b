"""Hostile values in request bodies: each is a 400 (or 404 for a name that cannot exist) in OpenAI's
error body naming its parameter, never a 500. Bodies are raw JSON, as an attacker would send them:
lone surrogates ("\\ud800"), NUL, NaN and Infinity, oversized names and integers."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from sqlalchemy import Engine

from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.errors import StoreError
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents

LONG = "m" * 300
HELLO = '"messages": [{"role": "user", "content": "hi"}]'

# (route, raw JSON body, status, param)
PROBES = [
    ("/v1/embeddings", r'{"input": "\ud800"}', 400, "input"),
    ("/v1/embeddings", r'{"input": ["fine", "bad \udfff here"]}', 400, "input"),
    ("/v1/embeddings", f'{{"input": "x", "model": "{LONG}"}}', 404, "model"),
    ("/v1/embeddings", r'{"input": "x", "model": "\ud800"}', 404, "model"),
    ("/v1/embeddings", r'{"input": "x", "model": "a\u0000b"}', 404, "model"),
    ("/v1/search", r'{"collection": "hostile", "query": "\ud800"}', 400, "query"),
    ("/v1/search", r'{"collection": "a\u0000b", "query": "x"}', 404, "collection"),
    ("/v1/search", f'{{"collection": "{LONG * 30}", "query": "x"}}', 404, "collection"),
    ("/v1/search", r'{"collection": "hostile", "query": "x", "filter": {"team": "\ud800"}}', 400, "filter"),
    ("/v1/search", r'{"collection": "hostile", "query": "x", "filter": {"te\u0000am": 1}}', 400, "filter"),
    ("/v1/search", r'{"collection": "hostile", "query": "x", "filter": {"n": NaN}}', 400, "filter"),
    ("/v1/search", r'{"collection": "hostile", "query": "x", "filter": {"n": {"$gt": Infinity}}}', 400, "filter"),
    ("/v1/search", r'{"collection": "hostile", "query": "x", "filter": {"n": {"$in": [1, -Infinity]}}}', 400, "filter"),
    ("/v1/chat/completions", r'{"messages": [{"role": "user", "content": "\ud800"}]}', 400, "messages.0.content"),
    (
        "/v1/chat/completions",
        r'{"messages": [{"role": "user", "content": [{"type": "text", "text": "ok \udc00"}]}]}',
        400,
        "messages.0.content",
    ),
    ("/v1/chat/completions", f'{{{HELLO}, "collection": "a\\u0000"}}', 404, "collection"),
    ("/v1/chat/completions", f'{{{HELLO}, "collection": "hostile", "filter": {{"n": NaN}}}}', 400, "filter"),
    ("/v1/chat/completions", f'{{{HELLO}, "model": "{LONG}"}}', 404, "model"),
    ("/v1/completions", r'{"prompt": "\ud800"}', 400, "prompt"),
]


@pytest.fixture(scope="module")
def hostile(engine: Engine, embedder: EmbeddingEngine) -> None:
    text = "A document for the hostile probes."
    with engine.begin() as conn:
        col = collections.create_collection(conn, "hostile", embedder.manifest.name, embedder.dims, "cosine")
        [doc_id] = documents.register(conn, col, [SourceDocument("h", "mem://h", text, {"n": 1})]).queued
        row = chunks.ChunkRow(0, text, hashlib.sha256(text.encode()).hexdigest(), 8, embedder.embed([text]).vectors[0])
        chunks.write_chunks(conn, col, doc_id, [row])


@pytest.mark.parametrize(("route", "body", "status", "param"), PROBES)
def test_hostile_value_is_a_clear_error(chat_api, hostile, route: str, body: str, status: int, param: str) -> None:
    response = httpx.post(
        chat_api.url + route, content=body.encode(), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert "Traceback" not in error["message"] and error["type"] in ("invalid_request_error",)


def test_top_k_of_a_trillion_is_taken(chat_api) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "top_k": 10**12, "temperature": 1, "max_tokens": 4}
    assert httpx.post(chat_api.url + "/v1/chat/completions", json=body, timeout=60).status_code == 200


def test_collection_names_postgres_cannot_hold_are_refused(engine: Engine, embedder: EmbeddingEngine) -> None:
    for name in ("a\x00b", "\ud800", "", "c" * 201):
        with engine.begin() as conn, pytest.raises(StoreError, match="collection name"):
            collections.create_collection(conn, name, embedder.manifest.name, embedder.dims)
