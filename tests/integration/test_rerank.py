"""Reranking with a cross-encoder: a tiny random BertForSequenceClassification built here, converted with
`onnxvec models convert`, scored through the API and checked against PyTorch's logits; the Cohere/Jina
and TEI shapes, their errors, and `rerank: true` on search and chat retrieval."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine

from onnxvec.chat.service import ChatRequest, ChatService
from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.embedding.service import EmbeddingService
from onnxvec.errors import ModelError
from onnxvec.models.pull import pull_local
from onnxvec.models.store import ModelStore
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents
from tests.helpers import onnxvec
from tests.tinyreranker import CORPUS, MAX_LENGTH, torch_logits

RERANKER = "tiny-reranker"  # tests/conftest.py converts it with `onnxvec models convert`
QUERY = "where are vectors stored and searched?"
LONG = " ".join(CORPUS * 3)  # far past MAX_LENGTH tokens: its pair is cut
DOCUMENTS = [*CORPUS, LONG, "Paris", "vectors"]


@pytest.fixture(scope="module")
def expected(tiny_reranker_folder: Path) -> np.ndarray:
    """PyTorch's logits of (QUERY, document) for DOCUMENTS, the long one truncated as transformers does."""
    return np.array(torch_logits(tiny_reranker_folder, QUERY, DOCUMENTS))


@pytest.fixture(scope="module")
def rerank_api(start_api, tiny_reranker: str):
    return start_api(rerank_model=tiny_reranker)


@pytest.fixture(scope="module")
def limited_api(start_api, tiny_reranker: str):
    """For the error cases: at most 4 documents a request."""
    return start_api(rerank_model=tiny_reranker, max_rerank_documents=4)


def _post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_manifest_and_models_list(rerank_api, settings: Settings, model_store: ModelStore, tiny_reranker: str) -> None:
    manifest = model_store.get(tiny_reranker)
    listed_line = next(
        line for line in onnxvec(settings, "models", "list").stdout.splitlines() if line.startswith(tiny_reranker + " ")
    )
    assert listed_line.split() == [tiny_reranker, "reranker", str(MAX_LENGTH), "convert"]
    assert (manifest.kind, manifest.max_seq_length, manifest.dims) == ("reranker", MAX_LENGTH, None)
    listed = {m["id"]: m for m in httpx.get(rerank_api.url + "/v1/models").json()["data"]}
    assert listed[tiny_reranker]["kind"] == "reranker"


def test_scores_equal_pytorch_logits(rerank_api, expected: np.ndarray) -> None:
    """TEI's raw_scores are the logits: the ONNX export and the pair tokenization (query kept, the
    document cut) give PyTorch's numbers, the truncated pair included."""
    response = _post(rerank_api, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True})
    assert response.status_code == 200, response.text
    assert response.headers["X-Truncated-Inputs"] == "1"
    ranked = response.json()
    assert sorted(r["index"] for r in ranked) == list(range(len(DOCUMENTS)))
    got = np.array([r["score"] for r in sorted(ranked, key=lambda r: r["index"])])
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)
    assert [r["index"] for r in ranked] == np.argsort(-expected, kind="stable").tolist()
    assert np.ptp(expected) > 0.05  # the orders compared here are not ties


def test_cohere_shape(rerank_api, tiny_reranker: str, expected: np.ndarray) -> None:
    """The body Cohere's docs show for v1/v2 rerank (documents as strings; top_n; return_documents)."""
    body = {"model": tiny_reranker, "query": QUERY, "documents": DOCUMENTS, "top_n": 3, "return_documents": False}
    response = _post(rerank_api, "/v1/rerank", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == tiny_reranker and answer["id"]
    results = answer["results"]
    assert [r["index"] for r in results] == np.argsort(-expected, kind="stable")[:3].tolist()
    for result in results:
        assert set(result) == {"index", "relevance_score"}
        assert result["relevance_score"] == pytest.approx(_sigmoid(expected[result["index"]]), abs=1e-5)
    tokens = answer["usage"]["total_tokens"]
    assert tokens > len(DOCUMENTS) * 3 and answer["meta"]["tokens"]["input_tokens"] == tokens


def test_pairs_go_through_the_shared_micro_batcher(rerank_api, tiny_reranker: str) -> None:
    """Reranking is scheduled as embeddings are: its forwards and tokens are the micro-batcher's metrics."""
    _post(rerank_api, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS})
    metrics = httpx.get(rerank_api.url + "/metrics").text
    forwards = re.search(rf'^onnxvec_batch_inputs_sum{{model="{tiny_reranker}"}} (\S+)$', metrics, re.M)
    tokens = re.search(rf'^onnxvec_tokens_embedded_total{{model="{tiny_reranker}"}} (\S+)$', metrics, re.M)
    assert forwards and float(forwards[1]) >= len(DOCUMENTS) and tokens and float(tokens[1]) > len(DOCUMENTS)


def test_jina_shape_returns_documents(rerank_api, expected: np.ndarray) -> None:
    """Jina's body: documents as {text} objects, no top_n (all come back), the documents by default."""
    body = {"model": RERANKER, "query": QUERY, "documents": [{"text": d} for d in DOCUMENTS]}
    results = _post(rerank_api, "/v1/rerank", body).json()["results"]
    assert [r["index"] for r in results] == np.argsort(-expected, kind="stable").tolist()
    assert all(r["document"] == {"text": DOCUMENTS[r["index"]]} for r in results)
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)


def test_tei_shape(rerank_api, expected: np.ndarray) -> None:
    ranked = _post(rerank_api, "/rerank", {"query": QUERY, "texts": DOCUMENTS[:3], "return_text": True}).json()
    order = np.argsort(-expected[:3], kind="stable").tolist()
    assert [(r["index"], r["text"]) for r in ranked] == [(i, DOCUMENTS[i]) for i in order]
    assert [r["score"] for r in ranked] == pytest.approx([_sigmoid(expected[i]) for i in order], abs=1e-5)
    plain = _post(rerank_api, "/rerank", {"query": QUERY, "texts": DOCUMENTS[:3]}).json()
    assert all(set(r) == {"index", "score"} for r in plain)


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/rerank", {"query": QUERY, "documents": []}, 400, "documents"),
        ("/v1/rerank", {"query": "", "documents": ["x"]}, 400, "query"),
        ("/v1/rerank", {"query": QUERY, "documents": ["a"] * 5}, 400, "documents"),  # over the limit of 4
        ("/v1/rerank", {"model": "no-such-model", "query": QUERY, "documents": ["x"]}, 404, "model"),
        ("/v1/rerank", {"model": "all-MiniLM-L6-v2", "query": QUERY, "documents": ["x"]}, 400, "model"),
        ("/v1/rerank", {"query": QUERY, "documents": [{"title": "x"}]}, 400, "documents.0"),
        ("/v1/embeddings", {"model": RERANKER, "input": "x"}, 400, "model"),
        ("/rerank", {"query": QUERY, "texts": []}, 400, "texts"),
        ("/rerank", {"query": QUERY, "texts": ["short", LONG], "truncate": False}, 400, "texts"),
    ],
)
def test_errors_are_openai_shaped(limited_api, path: str, body: dict, status: int, param: str) -> None:
    response = _post(limited_api, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_no_reranker_configured_is_a_400(api, collection: collections.Collection) -> None:
    response = _post(api, "/v1/rerank", {"query": QUERY, "documents": ["x"]})
    assert response.status_code == 400 and "ONNXVEC_RERANK_MODEL" in response.json()["error"]["message"]
    response = _post(api, "/v1/search", {"collection": collection.name, "query": QUERY, "rerank": True})
    assert response.status_code == 400 and "ONNXVEC_RERANK_MODEL" in response.json()["error"]["message"]


def test_a_long_query_keeps_half_the_pair(rerank_api, tiny_reranker_folder: Path) -> None:
    """A query over half the model's length is cut to that half and the document fills the rest: the
    logit PyTorch gives for exactly those tokens (built by hand here from the tokenizer's ids)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    long_query = " ".join(CORPUS[:3])
    got = _post(rerank_api, "/rerank", {"query": long_query, "texts": [LONG], "raw_scores": True}).json()[0]
    tokenizer = AutoTokenizer.from_pretrained(tiny_reranker_folder)
    half = (MAX_LENGTH - 3) // 2  # [CLS] query [SEP] document [SEP]
    query = tokenizer(long_query, add_special_tokens=False)["input_ids"]
    assert len(query) > half
    document = tokenizer(LONG, add_special_tokens=False)["input_ids"][: MAX_LENGTH - 3 - half]
    first = [tokenizer.cls_token_id, *query[:half], tokenizer.sep_token_id]
    ids = torch.tensor([first + document + [tokenizer.sep_token_id]])
    types = torch.tensor([[0] * len(first) + [1] * (len(document) + 1)])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reranker_folder).eval()
    with torch.no_grad():
        logit = model(input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids)).logits[0, 0]
    assert ids.shape[1] == MAX_LENGTH and got["score"] == pytest.approx(float(logit), abs=2e-5)


@pytest.fixture(scope="module")
def collection(engine: Engine, embedder: EmbeddingEngine) -> collections.Collection:
    """DOCUMENTS as one-chunk documents of a collection of the default embedding model."""
    texts = DOCUMENTS
    vectors = embedder.embed(texts).vectors
    with engine.begin() as conn:
        col = collections.create_collection(conn, "rerank", embedder.manifest.name, embedder.dims, "cosine")
        sources = [SourceDocument(f"r-{i}", f"mem://r/{i}", text, {}) for i, text in enumerate(texts)]
        for doc_id, text, vector in zip(documents.register(conn, col, sources).queued, texts, vectors, strict=True):
            row = chunks.ChunkRow(0, text, hashlib.sha256(text.encode()).hexdigest(), 8, vector)
            chunks.write_chunks(conn, col, doc_id, [row])
    return col


def test_search_rerank_returns_the_cross_encoders_order(
    rerank_api, collection: collections.Collection, expected: np.ndarray
) -> None:
    """k=3 of 8 chunks: all 8 are candidates (max(k*4, 20)), and the best 3 by PyTorch's logits come back."""
    body = {"collection": collection.name, "query": QUERY, "k": 3}
    plain = _post(rerank_api, "/v1/search", body).json()
    reranked = _post(rerank_api, "/v1/search", body | {"rerank": True}).json()
    wanted = np.argsort(-expected, kind="stable")[:3].tolist()
    assert [hit["external_id"] for hit in reranked["data"]] == [f"r-{i}" for i in wanted]
    assert [hit["rerank_score"] for hit in reranked["data"]] == pytest.approx(
        [_sigmoid(expected[i]) for i in wanted], abs=1e-5
    )
    assert [h["external_id"] for h in plain["data"]] != [h["external_id"] for h in reranked["data"]]
    assert all("rerank_score" not in hit for hit in plain["data"])
    assert reranked["usage"]["total_tokens"] > plain["usage"]["total_tokens"]
    wrong_kind = _post(rerank_api, "/v1/search", body | {"rerank_model": "all-MiniLM-L6-v2"})
    assert wrong_kind.status_code == 400 and wrong_kind.json()["error"]["param"] == "model"


def test_chat_retrieval_reranks(
    settings: Settings, engine: Engine, tiny_reranker: str, collection: collections.Collection, expected: np.ndarray
) -> None:
    """The chat request's retrieval options: `rerank` hands chat the reranker's best k as its sources."""

    async def retrieve() -> list[str]:
        service = EmbeddingService(settings)
        chat = ChatService(settings, engine, service)
        try:
            messages = [{"role": "user", "content": QUERY}]
            request = ChatRequest(messages, collection=collection.name, k=2, rerank=True, rerank_model=tiny_reranker)
            return [hit.external_id for hit in await chat.retrieve(request)]
        finally:
            await chat.close()
            await service.close()

    assert asyncio.run(retrieve()) == [f"r-{i}" for i in np.argsort(-expected, kind="stable")[:2]]


def test_pull_path_detects_or_is_told_the_kind(model_store: ModelStore, tiny_reranker: str, tmp_path: Path) -> None:
    """`models pull --path` of an exported cross-encoder: its kind read from config.json's architectures,
    or given with --kind when the config does not say (else it would be taken for an embedding model)."""
    folder = tmp_path / "copy"
    shutil.copytree(model_store.path(tiny_reranker), folder)
    (folder / "manifest.json").unlink()
    assert pull_local(model_store, "reranker-copy", folder).kind == "reranker"
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError):
        pull_local(model_store, "reranker-unsaid", folder)
    assert pull_local(model_store, "reranker-told", folder, kind="reranker").kind == "reranker"
