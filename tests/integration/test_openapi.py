"""The OpenAPI document against the live app: schemathesis runs all of its checks on every operation,
and the document says what a client needs (typed bodies, OpenAI's errors, bearer auth, no 422)."""

from __future__ import annotations

import hashlib
import itertools
import json

import httpx
import pytest
import schemathesis
from hypothesis import settings
from sqlalchemy import Engine

from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents

KEY = "sk-openapi-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed_api(start_api, engine: Engine, embedder: EmbeddingEngine, tiny_reranker: str):
    """A server with a key (so that schemathesis sees auth enforced), the tiny reranker as its default, and
    the collection that the document's search example names, so that the example finds something."""
    text = "Rotate keys with `onnxvec keys create`, then revoke the old one."
    with engine.begin() as conn:
        docs = collections.create_collection(conn, "docs", embedder.manifest.name, embedder.dims, "cosine")
        [doc_id] = documents.register(conn, docs, [SourceDocument("keys", "mem://keys", text, {"team": "x"})]).queued
        row = chunks.ChunkRow(0, text, hashlib.sha256(text.encode()).hexdigest(), 12, embedder.embed([text]).vectors[0])
        chunks.write_chunks(conn, docs, doc_id, [row])
    return start_api(api_keys=KEY, rerank_model=tiny_reranker, documents_wait_seconds=1)


@pytest.fixture(scope="module")
def chat_schema(start_api, tiny_chat: str, tiny_reranker: str) -> schemathesis.BaseSchema:
    """Chat and legacy completions on a keyed server whose chat model (and reranker, for a request's
    `rerank`) is the tiny one."""
    server = start_api(api_keys=KEY, chat_model=tiny_chat, rerank_model=tiny_reranker)
    return schemathesis.openapi.from_url(server.url + "/openapi.json", headers=AUTH)


@pytest.fixture(scope="module")
def api_schema(keyed_api) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(keyed_api.url + "/openapi.json", headers=AUTH)


@pytest.fixture(autouse=True)
def _pytest9_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas read `Function._nodeid`, which pytest 9.2 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """The stream route's body: the document describes it as an array, sent one item per line."""
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


GENERATION = "^/v1/(chat/)?completions$"
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=GENERATION)

CL100K_TOKENS = 100_256  # ids 0..100255 are cl100k_base's ordinary tokens (ONNXVEC_TOKEN_IDS' default)


def whole(value: object) -> bool:
    """A JSON integer (3 or 3.0), not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()


def under(value: object, bound: int, low: int) -> object:
    """A whole number at or past `bound` brought into [low, bound); anything else as it is."""
    return low + int(value) % (bound - low) if whole(value) and value >= bound else value


def within_model_limits(body: object, dims: int) -> None:
    """Limits that depend on the model (its dims, its encoding's vocabulary) are described, not typed,
    in the document: keep generated values under the served model's, so that its 400 for them is not
    taken for a valid request refused. Only integers over a bound move (and a rerank's valid
    "truncate": false becomes true), and the document states no such bound, so no invalid request
    becomes a valid one."""
    if not isinstance(body, dict):
        return
    if "dimensions" in body:
        body["dimensions"] = under(body["dimensions"], dims + 1, 1)
    if ("texts" in body or "documents" in body) and body.get("truncate") is False:
        body["truncate"] = True  # generated text passes the tiny reranker's 48 tokens a pair: no refusal for it
    items = body.get("input")
    if isinstance(items, list):
        for ids in [items, *(x for x in items if isinstance(x, list))]:
            ids[:] = [under(i, CL100K_TOKENS, 0) for i in ids]


NEW_NAMES = itertools.count()


def creatable(body: object) -> None:
    """What a new collection's validity depends on beyond its document: a name nobody took yet (a taken
    one, or one with a NUL, is a 400), an overlap below this request's chunk size, and a text search
    configuration this server has (custom ones are allowed, so the document names none). Only values
    the document already accepts are replaced, so no invalid request becomes a valid one."""
    if not isinstance(body, dict):
        return
    if isinstance(body.get("name"), str) and 1 <= len(body["name"]) <= collections.MAX_NAME:
        body["name"] = f"schemathesis-{next(NEW_NAMES)}"
    if isinstance(body.get("language"), str) and body["language"]:
        body["language"] = "english"
    tokens, overlap = body.get("chunk_tokens"), body.get("chunk_overlap")
    tokens, overlap = 256 if tokens is None else tokens, 32 if overlap is None else overlap  # the defaults
    sized = whole(tokens) and collections.MIN_CHUNK_TOKENS <= tokens <= collections.MAX_CHUNK_TOKENS
    if sized and whole(overlap) and 0 <= overlap < collections.MAX_CHUNK_TOKENS:
        body["chunk_overlap"] = int(overlap) % int(tokens)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True)
def test_schemathesis(case: schemathesis.Case, embedder: EmbeddingEngine) -> None:
    """Every check schemathesis has (server errors, status codes, content types, bodies and headers
    against the document, negative data rejected, positive data accepted, auth enforced, ...)."""
    within_model_limits(case.body, embedder.dims)
    if case.path == "/v1/collections" and case.method == "POST":
        creatable(case.body)
    case.call_and_validate(headers=AUTH)


generation_schema = schemathesis.pytest.from_fixture("chat_schema").include(path_regex=GENERATION)
TINY_BUDGET = 32  # tokens: the tiny model's answers stay short so that each case takes milliseconds


def within_generation_budget(body: object) -> None:
    """Token budgets past the tiny model's are brought under it (the document states no bound)."""
    if not isinstance(body, dict):
        return
    for field in ("max_tokens", "max_completion_tokens", "min_tokens"):
        if field in body:
            body[field] = under(body[field], TINY_BUDGET + 1, 1)


@generation_schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True)
def test_schemathesis_generation(case: schemathesis.Case) -> None:
    """The same checks over chat and legacy completions, generating with the tiny chat model."""
    within_generation_budget(case.body)
    case.call_and_validate(headers=AUTH)


def test_document_types_bodies_errors_and_auth(api) -> None:
    """No 422 (validation errors are 400s), the bearer scheme, typed bodies and OpenAI's error body."""
    raw = httpx.get(api.url + "/openapi.json")
    doc = raw.json()
    assert '"422"' not in raw.text and "HTTPValidationError" not in raw.text
    scheme = doc["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    embeddings = doc["paths"]["/v1/embeddings"]["post"]
    assert embeddings["security"] == [{"HTTPBearer": []}]
    assert "security" not in doc["paths"]["/health"]["get"]
    ok = embeddings["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/EmbeddingResponse"}
    for code in ("400", "401", "404", "413", "429", "500", "503"):
        error = embeddings["responses"][code]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorResponse"}, code
    assert doc["components"]["schemas"]["ErrorResponse"]["properties"]["error"] == {
        "$ref": "#/components/schemas/ErrorDetail"
    }
    assert set(doc["components"]["schemas"]["ErrorDetail"]["required"]) == {"message", "type", "param", "code"}
    assert embeddings["responses"]["429"]["headers"]["Retry-After"]["required"] is True
