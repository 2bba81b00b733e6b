"""Authentication fails closed: keys from the environment and the database, ONNXVEC_AUTH, revocation of
the last key, the document behind the key, keys through a database outage, and a request admitted only
once authenticated (slow or keyless clients hold no slot)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest
from sqlalchemy import text

from onnxvec.config import Settings
from onnxvec.infra import db
from onnxvec.storage import collections, keys

ENV_KEY = "sk-env-test-key"
AUTH = {"Authorization": f"Bearer {ENV_KEY}"}
GUARDED = [
    ("GET", "/v1/models"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/no/such/route"),
]


@pytest.fixture(scope="module")
def secured(start_api):
    server = start_api(api_keys=f"{ENV_KEY}, other-key")
    server.app.state.keys.ttl = 0  # read the database on every request: revocation shows at once
    return server


def test_keys_guard_everything_but_health(secured) -> None:
    assert httpx.get(secured.url + "/health").status_code == 200
    for method, path in GUARDED:
        response = httpx.request(method, secured.url + path, json={"input": "x"})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "missing_api_key"
    wrong = httpx.get(secured.url + "/v1/models", headers={"Authorization": "Bearer sk-wrong-key"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wron..." in wrong.json()["error"]["message"] and "sk-wrong-key" not in wrong.text
    assert httpx.get(secured.url + "/openapi.json", headers=AUTH).json()["info"]["title"] == "onnxvec"
    assert httpx.get(secured.url + "/docs", headers=AUTH).status_code == 200


def test_openai_client_with_env_key(secured) -> None:
    good = openai.OpenAI(base_url=secured.url + "/v1", api_key=ENV_KEY, max_retries=0)
    assert len(good.embeddings.create(input="hello", model="all-MiniLM-L6-v2").data) == 1
    bad = openai.OpenAI(base_url=secured.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_revoking_the_last_key_leaves_the_api_closed(start_api, new_database) -> None:
    url = new_database("auth_revoke")
    server = start_api(database_url=url)
    server.app.state.keys.ttl = 0
    assert httpx.get(server.url + "/v1/models").status_code == 200  # no key was ever created: open
    database = db.make_engine(url)
    with database.begin() as conn:
        key, plaintext = keys.create(conn, "only")
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 200
    with database.begin() as conn:
        assert keys.revoke(conn, key.id) and not keys.revoke(conn, key.id)
    database.dispose()
    revoked = httpx.get(server.url + "/v1/models", headers=headers)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_api_key"
    for method, path in GUARDED:  # closed to everyone, not open to anyone
        assert httpx.request(method, server.url + path, json={"input": "x"}).status_code == 401, path


def test_auth_required_before_any_key_and_off_only_when_said(start_api) -> None:
    closed = start_api(auth="required")
    assert httpx.get(closed.url + "/v1/models").status_code == 401
    assert httpx.get(closed.url + "/openapi.json").status_code == 401
    assert httpx.get(closed.url + "/health").status_code == 200
    opened = start_api(auth="off", api_keys=ENV_KEY)
    assert httpx.get(opened.url + "/v1/models").status_code == 200


def test_keys_keep_working_while_the_database_is_gone(start_api, new_database, engine) -> None:
    url = new_database("auth_outage")
    server = start_api(database_url=url)
    server.app.state.keys.ttl = 0
    database = db.make_engine(url)
    with database.begin() as conn:
        _, plaintext = keys.create(conn, "k")
    database.dispose()
    headers = {"Authorization": f"Bearer {plaintext}"}
    body = {"input": "still here"}
    assert httpx.post(server.url + "/v1/embeddings", json=body, headers=headers).status_code == 200
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text('DROP DATABASE "auth_outage" WITH (FORCE)'))
    assert httpx.post(server.url + "/v1/embeddings", json=body, headers=headers).status_code == 200
    assert httpx.post(server.url + "/v1/embeddings", json=body).status_code == 401


def test_keys_command_line(settings: Settings, new_database) -> None:
    url = new_database("auth_cli")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env |= {"ONNXVEC_HOME": str(settings.home), "DATABASE_URL": url}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "onnxvec", "keys", *args], env=env, capture_output=True, text=True)

    created = cli("create", "ci")
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    database = db.make_engine(url)
    with database.connect() as conn:
        assert keys.digest(plaintext) in keys.active_digests(conn)
    listed = cli("list", "--json")
    key_id = next(row["id"] for row in json.loads(listed.stdout) if row["prefix"] == plaintext[:10])
    revoked = cli("revoke", str(key_id))
    assert revoked.returncode == 0 and "ONNXVEC_AUTH=off" in revoked.stderr  # no live key left: it says so
    again = cli("revoke", str(key_id))
    assert again.returncode == 1 and "no active key" in again.stderr
    with database.connect() as conn:
        assert keys.digest(plaintext) not in keys.active_digests(conn)
    reader = cli("create", "reader", "--read-only")
    assert reader.returncode == 0, reader.stderr
    with database.connect() as conn:
        assert keys.active_digests(conn)[keys.digest(reader.stdout.strip())].read_only
    assert "read-only" in cli("list").stdout.splitlines()[-1]
    database.dispose()


def _half_bodies(url: str, count: int, headers: str = "") -> list[socket.socket]:
    """Sockets that declared a 1,000-byte body and sent half of it."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
        sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + b" " * 500)
        sockets.append(sock)
    return sockets


def _status(sock: socket.socket, timeout: float) -> int:
    sock.settimeout(timeout)
    return int(sock.recv(4096).split(b" ", 2)[1])


def test_keyless_half_open_bodies_take_no_slot(start_api) -> None:
    """256 sockets without a key, each half a body: refused at once, unread; a keyed client is served."""
    server = start_api(api_keys=ENV_KEY, max_concurrent_requests=8)
    sockets = _half_bodies(server.url, 256)
    try:
        started = time.monotonic()
        served = httpx.post(server.url + "/v1/embeddings", json={"input": "me"}, headers=AUTH, timeout=10)
        assert served.status_code == 200 and time.monotonic() - started < 2
        assert {_status(sock, 5) for sock in sockets} == {401}
    finally:
        for sock in sockets:
            sock.close()


def test_a_body_that_does_not_arrive_is_408_and_frees_its_slot(start_api) -> None:
    server = start_api(api_keys=ENV_KEY, max_concurrent_requests=2, body_timeout_seconds=1)
    slow = _half_bodies(server.url, 2, f"Authorization: Bearer {ENV_KEY}\r\n")
    try:
        time.sleep(0.3)
        assert httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, headers=AUTH).status_code == 429
        assert [_status(sock, 5) for sock in slow] == [408, 408]
        assert httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, headers=AUTH).status_code == 200
    finally:
        for sock in slow:
            sock.close()


def test_headers_that_do_not_arrive_are_408_and_close(start_api) -> None:
    """256 sockets trickling a header line now and then (uvicorn alone waits forever): each gets 408
    and is closed once `header_timeout_seconds` passed since it opened, and others are served meanwhile."""
    server = start_api(api_keys=ENV_KEY, header_timeout_seconds=1)
    host, port = server.url.removeprefix("http://").split(":")
    sockets = [socket.create_connection((host, int(port))) for _ in range(256)]
    try:
        opened = time.monotonic()
        for sock in sockets:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - opened < 0.8:  # a line every 0.2 s: never idle, never done
            for sock in sockets:
                sock.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.2)
        served = httpx.post(server.url + "/v1/embeddings", json={"input": "me"}, headers=AUTH, timeout=10)
        assert served.status_code == 200
        replies = []
        for sock in sockets:
            sock.settimeout(5)
            replies.append(b"".join(iter(lambda s=sock: s.recv(4096), b"")))  # read to the close
        assert time.monotonic() - opened < 5
        assert {reply.split(b" ", 2)[1] for reply in replies} == {b"408"}
        assert json.loads(replies[0].split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    finally:
        for sock in sockets:
            sock.close()


def test_a_key_scoped_to_collections_sees_only_them(start_api, new_database, embedder) -> None:
    """`keys create NAME --collections a`: search, chat retrieval and the collection list reach only
    those; any other collection is answered as missing (404), so the key learns nothing of it."""
    url = new_database("auth_scopes")
    database = db.make_engine(url)
    with database.begin() as conn:
        for name in ("mine", "theirs"):
            collections.create_collection(conn, name, embedder.manifest.name, embedder.dims)
        _, scoped = keys.create(conn, "scoped", ["mine"])
        _, full = keys.create(conn, "full")
    database.dispose()
    server = start_api(database_url=url)

    def call(key: str, method: str, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(method, server.url + path, json=body, headers={"Authorization": f"Bearer {key}"})

    assert [c["id"] for c in call(scoped, "GET", "/v1/collections").json()["data"]] == ["mine"]
    assert [c["id"] for c in call(full, "GET", "/v1/collections").json()["data"]] == ["mine", "theirs"]
    assert call(scoped, "POST", "/v1/search", {"collection": "mine", "query": "x"}).status_code == 200
    hidden = call(scoped, "POST", "/v1/search", {"collection": "theirs", "query": "x"})
    missing = call(scoped, "POST", "/v1/search", {"collection": "nowhere", "query": "x"})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == "collection 'theirs' does not exist"
    assert call(full, "POST", "/v1/search", {"collection": "theirs", "query": "x"}).status_code == 200
    question = {"messages": [{"role": "user", "content": "x"}], "collection": "theirs", "max_tokens": 1}
    refused = call(scoped, "POST", "/v1/chat/completions", question)
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "collection", refused.text
    metrics = call(scoped, "GET", "/metrics")  # its series name every collection
    assert metrics.status_code == 403 and metrics.json()["error"]["type"] == "permission_error"
    assert call(full, "GET", "/metrics").status_code == 200


def test_a_read_only_key_reads_and_writes_nothing(start_api, new_database, embedder, tiny_reranker: str) -> None:
    """`keys create NAME --read-only`: embeddings, search, reranking, chat and every GET answer; any other method
    or POST route (those that write, and any added later) is 403 before its body is read."""
    url = new_database("auth_read_only")
    database = db.make_engine(url)
    with database.begin() as conn:
        collections.create_collection(conn, "docs", embedder.manifest.name, embedder.dims)
        _, reader = keys.create(conn, "reader", read_only=True)
        _, writer = keys.create(conn, "writer")
        assert [k.read_only for k in keys.list_keys(conn)] == [True, False]
    database.dispose()
    server = start_api(database_url=url, rerank_model=tiny_reranker)

    def call(key: str, method: str, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(method, server.url + path, json=body, headers={"Authorization": f"Bearer {key}"})

    assert call(reader, "POST", "/v1/embeddings", {"input": "x"}).status_code == 200
    assert call(reader, "POST", "/v1/rerank", {"query": "x", "documents": ["y"]}).status_code == 200
    assert call(reader, "POST", "/rerank", {"query": "x", "texts": ["y"]}).status_code == 200
    assert call(reader, "POST", "/v1/search", {"collection": "docs", "query": "x"}).status_code == 200
    for path in ("/v1/models", "/v1/collections", "/ready", "/openapi.json"):
        assert call(reader, "GET", path).status_code == 200, path
    writes = [("POST", "/v1/collections"), ("DELETE", "/v1/collections/docs"), ("PUT", "/v1/models/x")]
    writes += [("PATCH", "/v1/collections/docs"), ("POST", "/v1/collections/docs/documents")]
    for method, path in writes:
        refused = call(reader, method, path, {"name": "x"})
        assert refused.status_code == 403, (method, path)
        assert refused.json()["error"] == {
            "message": f"This API key is read-only: it cannot call {method} {path}.",
            "type": "permission_error",
            "param": None,
            "code": "read_only_key",
        }
        assert call(writer, method, path, {"name": "x"}).status_code != 403  # not refused by the key
