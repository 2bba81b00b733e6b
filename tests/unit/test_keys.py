"""API keys that were never readable refuse (503), never open."""

from __future__ import annotations

import asyncio
import json

from api.auth import refusal
from onnxvec.infra import db
from onnxvec.storage.keys import KeyRing


def test_keys_never_read_are_503_not_open() -> None:
    unreachable = db.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    response = asyncio.run(refusal(KeyRing(unreachable, []), {"path": "/v1/models", "headers": []}))
    assert response is not None and response.status_code == 503
    assert json.loads(response.body)["error"]["type"] == "service_unavailable"
