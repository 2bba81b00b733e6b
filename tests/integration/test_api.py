"""The embeddings and models endpoints through the official openai client against a real server."""

from __future__ import annotations

import asyncio
import base64
import os
import threading

import httpx
import numpy as np
import openai
import pytest

from onnxvec.embedding.engine import EmbeddingEngine, l2_normalize
from onnxvec.models.store import ModelStore

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Postgres is the source of truth; Redis only carries work.",
    "Embeddings map text to vectors.",
]


@pytest.fixture(scope="module")
def client(api) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.url + "/v1", api_key="unused", max_retries=0)


def _vectors(response) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_default_base64_matches_engine(client: openai.OpenAI, embedder: EmbeddingEngine) -> None:
    response = client.embeddings.create(input=TEXTS[0], model="all-MiniLM-L6-v2")  # the client asks for base64
    assert response.object == "list" and response.model == "all-MiniLM-L6-v2"
    assert [item.index for item in response.data] == [0]
    np.testing.assert_allclose(_vectors(response)[0], embedder.embed([TEXTS[0]]).vectors[0], atol=1e-6)
    tokens = embedder.embed([TEXTS[0]]).tokens[0]
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens


def test_base64_is_little_endian_float32(api, embedder: EmbeddingEngine) -> None:
    body = httpx.post(api.url + "/v1/embeddings", json={"input": TEXTS[1], "encoding_format": "base64"}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(raw) == 4 * embedder.dims
    np.testing.assert_allclose(np.frombuffer(raw, "<f4"), embedder.embed([TEXTS[1]]).vectors[0], atol=1e-6)


def test_float_list_and_default_model(client: openai.OpenAI, embedder: EmbeddingEngine) -> None:
    response = client.embeddings.create(input=TEXTS, model="", encoding_format="float")
    assert response.model == "all-MiniLM-L6-v2"
    assert [item.index for item in response.data] == [0, 1, 2]
    assert all(isinstance(x, float) for x in response.data[0].embedding)
    np.testing.assert_allclose(_vectors(response), embedder.embed(TEXTS).vectors, atol=1e-6)


def _cl100k(model_store: ModelStore, monkeypatch: pytest.MonkeyPatch):
    """tiktoken's cl100k_base as OpenAI clients use it, from the copy the model store fetched (offline)."""
    import tiktoken

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(model_store.openai_encoding_dir))
    return tiktoken.get_encoding("cl100k_base")


def test_token_ids_are_read_as_openai_encoding(
    client: openai.OpenAI, embedder: EmbeddingEngine, model_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI clients send cl100k_base ids: they are decoded and embedded as the text, [CLS]/[SEP] included."""
    ids = _cl100k(model_store, monkeypatch).encode_batch(TEXTS[:2])
    one = client.embeddings.create(input=ids[0], model="all-MiniLM-L6-v2", encoding_format="float")
    many = client.embeddings.create(input=ids, model="all-MiniLM-L6-v2", encoding_format="float")
    expected = embedder.embed(TEXTS[:2])
    np.testing.assert_allclose(_vectors(one)[0], expected.vectors[0], atol=1e-6)
    np.testing.assert_allclose(_vectors(many), expected.vectors, atol=1e-6)
    assert many.usage.prompt_tokens == sum(expected.tokens)  # the model's tokens, not the client's
    for bad in ([5, -1], [100_276, 100_300]):
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(input=bad, model="all-MiniLM-L6-v2")
        assert info.value.body["param"] == "input" and "cl100k_base" in info.value.body["message"]


def test_model_token_ids_are_taken_as_given(start_api, embedder: EmbeddingEngine) -> None:
    """ONNXVEC_TOKEN_IDS=model: ids in the model's own vocabulary, used as sent (no special tokens added)."""
    server = start_api(token_ids="model")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    ids = embedder.tokenizer.encode(TEXTS[:2]).ids
    many = client.embeddings.create(input=ids, model="all-MiniLM-L6-v2", encoding_format="float")
    np.testing.assert_allclose(_vectors(many), embedder.embed(TEXTS[:2]).vectors, atol=1e-6)
    assert many.usage.prompt_tokens == len(ids[0]) + len(ids[1])
    bare = client.embeddings.create(input=ids[0][1:-1], model="all-MiniLM-L6-v2", encoding_format="float")
    assert float(_vectors(bare)[0] @ _vectors(many)[0]) < 0.999  # no [CLS]/[SEP] added: another input


def test_langchain_openai_defaults_give_the_text_vectors(
    api, embedder: EmbeddingEngine, model_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """langchain_openai.OpenAIEmbeddings sends tiktoken ids by default (check_embedding_ctx_length=True)."""
    from langchain_openai import OpenAIEmbeddings

    _cl100k(model_store, monkeypatch)
    texts = [*TEXTS, "Ünïcödé, emoji 🚀 and CJK 向量数据库 survive the round trip.", "word " * 400]
    expected = embedder.embed(texts).vectors
    for check in (True, False):
        lc = OpenAIEmbeddings(
            base_url=api.url + "/v1",
            api_key="unused",
            model="all-MiniLM-L6-v2",
            check_embedding_ctx_length=check,
            max_retries=0,
        )
        documents = np.array(lc.embed_documents(texts), dtype=np.float32)
        query = np.array(lc.embed_query(texts[1]), dtype=np.float32)
        assert (documents * expected).sum(axis=1).min() >= 0.999, check
        assert float(query @ expected[1]) >= 0.999, check


def test_dimensions_truncate_and_renormalize(client: openai.OpenAI, embedder: EmbeddingEngine) -> None:
    response = client.embeddings.create(input=TEXTS, model="all-MiniLM-L6-v2", dimensions=64)
    vectors = _vectors(response)
    assert vectors.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, l2_normalize(embedder.embed(TEXTS).vectors[:, :64]), atol=1e-6)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(input="x", model="all-MiniLM-L6-v2", dimensions=embedder.dims + 1)
    assert info.value.body["param"] == "dimensions"


def test_truncation_is_visible(client: openai.OpenAI, api, embedder: EmbeddingEngine) -> None:
    long_text = "word " * 1000
    response = client.embeddings.with_raw_response.create(input=[long_text, "short"], model="all-MiniLM-L6-v2")
    assert response.headers["x-truncated-inputs"] == "1"
    parsed = response.parse()
    assert parsed.data[0].model_extra == {"tokens": embedder.tokenizer.max_length, "truncated": True}
    assert parsed.data[1].model_extra["truncated"] is False
    timing = response.headers["server-timing"]
    assert all(f"{name};dur=" in timing for name in ("queue", "tokenize", "inference"))
    refused = httpx.post(api.url + "/v1/embeddings", json={"input": long_text, "truncate": False})
    assert refused.status_code == 400 and "maximum is 256" in refused.json()["error"]["message"]


def test_large_batches_are_split_not_refused(client: openai.OpenAI, embedder: EmbeddingEngine) -> None:
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(600)]  # > max_batch_size per forward
    response = client.embeddings.create(input=texts, model="all-MiniLM-L6-v2")
    assert len(response.data) == 600
    np.testing.assert_allclose(_vectors(response), embedder.embed(texts).vectors, atol=1e-6)


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    model = models["all-MiniLM-L6-v2"]
    assert model.object == "model" and model.owned_by == "onnxvec" and model.created > 0
    assert model.model_extra["kind"] == "embedding" and model.model_extra["dims"] == 384
    assert model.model_extra["max_seq_length"] == 256 and model.model_extra["pooling"] == "mean"
    assert set(model.model_extra["distance_metrics"]) == {"cosine", "l2", "ip"}
    assert client.models.retrieve("all-MiniLM-L6-v2").id == "all-MiniLM-L6-v2"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": []}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": [10**9]}, "input"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": 5}, "input"),  # not "input.str": pydantic's union members are no parameter
        ({"input": [{"text": "x"}]}, "input"),
    ],
)
def test_bad_requests_raise_bad_request_error(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="all-MiniLM-L6-v2", **kwargs)
    error = info.value.body
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert "input." not in error["message"] and "list[" not in error["message"]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(input="x", model="gpt-4o")
    assert info.value.body["code"] == "model_not_found"
    # no advice to pull what no catalog holds; the models that are here instead
    assert "models pull" not in info.value.body["message"] and "all-MiniLM-L6-v2" in info.value.body["message"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"input=hello", {"content-type": "application/x-www-form-urlencoded"}),
        (b'{"model": "all-MiniLM-L6-v2"}', {"content-type": "application/json"}),
        (b'{"input": [1, "a"]}', {"content-type": "application/json"}),
        (b'{"input": {"a": 1}}', {"content-type": "application/json"}),
    ],
)
def test_malformed_bodies_are_400_in_openai_shape(api, content: bytes, headers: dict) -> None:
    response = httpx.post(api.url + "/v1/embeddings", content=content, headers=headers)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_route_is_404_in_openai_shape(api) -> None:
    response = httpx.get(api.url + "/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"


def test_concurrent_requests_equal_single_requests(api, embedder: EmbeddingEngine) -> None:
    texts = [f"concurrent request {i}: " + "some words " * (i % 13) for i in range(64)]
    expected = embedder.embed(texts).vectors

    async def run() -> list[np.ndarray]:
        client = openai.AsyncOpenAI(base_url=api.url + "/v1", api_key="unused", max_retries=0)
        responses = await asyncio.gather(
            *(client.embeddings.create(input=text, model="all-MiniLM-L6-v2") for text in texts)
        )
        await client.close()
        return [_vectors(r)[0] for r in responses]

    forwards_before = _metric(api, "onnxvec_batch_inputs_count")
    got = asyncio.run(run())
    np.testing.assert_allclose(np.stack(got), expected, rtol=0, atol=1e-6)
    forwards = _metric(api, "onnxvec_batch_inputs_count") - forwards_before
    assert 1 <= forwards < 64, "concurrent requests should share forwards"


def _metric(api, name: str) -> float:
    lines = httpx.get(api.url + "/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + "{"))


def test_forwards_run_below_the_event_loop(api) -> None:
    httpx.post(api.url + "/v1/embeddings", json={"input": "a forward"})
    forwards = [t for t in threading.enumerate() if t.name.startswith("forward-all-MiniLM-L6-v2")]
    assert forwards
    for thread in forwards:
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == api.app.state.settings.compute_niceness
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0
