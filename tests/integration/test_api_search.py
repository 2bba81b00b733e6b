"""/v1/search and /v1/collections over a real pgvector collection, with metadata filters in SQL."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.storage import collections
from tests.helpers import small_collection

DOCS = [  # (text, metadata)
    ("Paris is the capital of France.", {"lang": "en", "year": 2019, "tag": "geo"}),
    ("Berlin is the capital of Germany.", {"lang": "en", "year": 2021, "tag": "geo"}),
    ("Madrid est la capitale de l'Espagne.", {"lang": "fr", "year": 2023, "tag": "geo"}),
    ("Bread is baked with flour, water and salt.", {"lang": "en", "year": 2022, "tag": "food"}),
    ("The violin has four strings.", {"lang": "en", "year": 2020, "tag": "music", "draft": True}),
]


@pytest.fixture(scope="module")
def collection(engine: Engine, embedder: EmbeddingEngine) -> collections.Collection:
    return small_collection(engine, embedder, "api-search", DOCS)


def _search(api, **body) -> httpx.Response:
    return httpx.post(api.url + "/v1/search", json={"collection": "api-search", **body})


def _texts(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["text"] for hit in response.json()["data"]]


def test_search_ranks_with_scores_and_sources(api, collection: collections.Collection) -> None:
    response = _search(api, query="What is the capital of France?", k=3)
    body = response.json()
    assert body["metric"] == "cosine" and body["model"] == collection.model and body["usage"]["prompt_tokens"] > 0
    top = body["data"][0]
    assert top["text"] == DOCS[0][0] and top["rank"] == 1 and top["external_id"] == "doc-0"
    assert top["source"] == "mem://0" and top["chunk"] == 0 and top["metadata"]["year"] == 2019
    scores = [hit["score"] for hit in body["data"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"lang": "fr"}, {DOCS[2][0]}),
        ({"tag": {"$in": ["food", "music"]}}, {DOCS[3][0], DOCS[4][0]}),
        ({"tag": {"$nin": ["geo"]}}, {DOCS[3][0], DOCS[4][0]}),
        ({"year": {"$gte": 2021, "$lt": 2023}}, {DOCS[1][0], DOCS[3][0]}),
        ({"lang": "en", "year": {"$lte": 2020}}, {DOCS[0][0], DOCS[4][0]}),
        ({"draft": {"$ne": True}}, {DOCS[i][0] for i in range(4)}),
        ({"tag": {"$gte": "music"}}, {DOCS[4][0]}),  # strings compare with strings
    ],
)
def test_filters(api, collection: collections.Collection, filter: dict, expected: set[str]) -> None:
    assert set(_texts(_search(api, query="capital city", k=10, filter=filter))) == expected


def test_include_text_false(api, collection: collections.Collection) -> None:
    data = _search(api, query="bread", k=1, include_text=False).json()["data"]
    assert "text" not in data[0] and data[0]["external_id"] == "doc-3"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"collection": "no-such", "query": "x"}, 404, "collection"),
        ({"query": "x"}, 400, "collection"),
        ({"collection": "api-search", "query": ""}, 400, "query"),
        ({"collection": "api-search", "query": "x", "k": 0}, 400, "k"),
        ({"collection": "api-search", "query": "x", "filter": {"year": {"$regex": "x"}}}, 400, "filter"),
        ({"collection": "api-search", "query": "x", "filter": {"tag": {"$in": []}}}, 400, "filter"),
        ({"collection": "api-search", "query": "x", "filter": {"tag": [1, 2]}}, 400, "filter"),
        # a string against stored numbers matches nothing: said, not answered with an empty list
        ({"collection": "api-search", "query": "x", "filter": {"year": {"$gt": "2000"}}}, 400, "filter"),
        ({"collection": "api-search", "query": "x", "unknown": 1}, 400, "unknown"),
    ],
)
def test_search_errors(api, collection: collections.Collection, body: dict, status: int, param: str | None) -> None:
    response = httpx.post(api.url + "/v1/search", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param and response.json()["error"]["message"]


def test_collections_report_model_metric_and_counts(api, collection: collections.Collection) -> None:
    listed = {c["id"]: c for c in httpx.get(api.url + "/v1/collections").json()["data"]}
    mine = listed["api-search"]
    assert (mine["model"], mine["dims"], mine["metric"]) == (collection.model, 384, "cosine")
    assert mine["chunks"] == len(DOCS) and sum(mine["documents"].values()) == len(DOCS)
