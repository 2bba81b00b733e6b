"""CORS: off by default; with ONNXVEC_CORS_ORIGINS, browsers on those origins may call the API."""

from __future__ import annotations

import httpx
import pytest

APP, EVIL = "http://app.example", "http://evil.example"
KEY = "sk-cors-test-key"


def _preflight(url: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return httpx.options(url + "/v1/embeddings", headers=headers)


def test_off_by_default(api) -> None:
    response = httpx.post(api.url + "/v1/embeddings", json={"input": "hi"}, headers={"Origin": APP})
    assert response.status_code == 200
    assert not any(name.startswith("access-control-") for name in response.headers)
    assert not any(name.startswith("access-control-") for name in _preflight(api.url, APP).headers)


@pytest.fixture(scope="module")
def cors_api(start_api):
    """Keys on too: a preflight carries no key, and must not need one."""
    return start_api(cors_origins=f"{APP}, http://other.example", api_keys=KEY)


def test_allowed_origin(cors_api) -> None:
    preflight = _preflight(cors_api.url, APP)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "POST" in preflight.headers["access-control-allow-methods"]
    auth = {"Origin": APP, "Authorization": f"Bearer {KEY}"}
    response = httpx.post(cors_api.url + "/v1/embeddings", json={"input": "hi"}, headers=auth)
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == APP
    assert "x-truncated-inputs" in response.headers["access-control-expose-headers"].lower()
    refused = httpx.post(cors_api.url + "/v1/embeddings", json={"input": "hi"}, headers={"Origin": APP})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP  # readable


def test_other_origin_gets_no_header(cors_api) -> None:
    assert "access-control-allow-origin" not in _preflight(cors_api.url, EVIL).headers
    auth = {"Origin": EVIL, "Authorization": f"Bearer {KEY}"}
    response = httpx.post(cors_api.url + "/v1/embeddings", json={"input": "hi"}, headers=auth)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
