"""Property-based fuzz of every endpoint against a real server: whatever the body, never a 5xx,
and every error is OpenAI-shaped."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
)
token_ids = st.lists(st.integers(-5, 40000), max_size=20)
inputs = (
    st.text(max_size=200) | st.lists(st.text(max_size=50), max_size=8) | token_ids | st.lists(token_ids, max_size=4)
)
embedding_bodies = st.fixed_dictionaries(
    {"input": inputs | json_values},
    optional={
        "model": st.sampled_from(["", "all-MiniLM-L6-v2", "nope"]) | json_values,
        "encoding_format": st.sampled_from(["float", "base64", "int8"]) | json_values,
        "dimensions": st.integers(-2, 400) | json_values,
        "user": json_values,
        "truncate": st.booleans() | json_values,
    },
)
operators = st.sampled_from(["$in", "$nin", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$regex", "in"])
filters = st.dictionaries(
    st.text(max_size=8), scalars | st.dictionaries(operators, scalars | st.lists(scalars, max_size=3), max_size=3)
)
search_bodies = st.fixed_dictionaries(
    {"collection": st.sampled_from(["api-fuzz", "nope", ""]) | json_values, "query": st.text(max_size=80)},
    optional={
        "k": st.integers(-2, 1200) | json_values,
        "filter": filters | json_values,
        "include_text": st.booleans() | json_values,
        "ef_search": st.integers(-2, 1200),
    },
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def http(api, engine, embedder):
    from onnxvec.storage import collections

    with engine.begin() as conn:
        collections.create_collection(conn, "api-fuzz", embedder.manifest.name, embedder.dims, "l2")
    with httpx.Client(base_url=api.url, timeout=60) as client:
        yield client


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@FUZZ
@given(body=embedding_bodies)
def test_embeddings_never_5xx(http: httpx.Client, body: dict) -> None:
    _check(http.post("/v1/embeddings", json=body))


@FUZZ
@given(body=search_bodies)
def test_search_never_5xx(http: httpx.Client, body: dict) -> None:
    _check(http.post("/v1/search", json=body))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(
        ["/v1/embeddings", "/v1/models", "/v1/search", "/v1/collections", "/ready", "/v1/models/"]
    ).flatmap(lambda p: st.just(p) | st.from_regex(r"[A-Za-z0-9._~%/-]{0,20}", fullmatch=True).map(lambda s: p + s)),
    content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_any_route_any_body_never_5xx(http: httpx.Client, method: str, path: str, content: bytes) -> None:
    _check(http.request(method, path, content=content))
