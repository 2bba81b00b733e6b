"""Changing a collection's model with zero downtime, against a real server, Postgres, Redis and worker:
32 clients search through a re-embedding with no error, no empty answer and no answer mixing versions;
the new version's vectors are the new model's; a rollback gives the old ranking back exactly; a
metric change re-uses every vector; a kill -9 mid-build resumes and ends with each document once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, text

from onnxvec.config import Settings
from onnxvec.embedding.chunker import chunk_text
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.models.store import ModelStore
from onnxvec.storage import collections, versions
from tests.helpers import onnxvec
from tests.integration.test_collections_http import refused

pytestmark = pytest.mark.slow  # minutes: `pytest -m 'not slow'` leaves it out

TOPICS = [
    "database index query replica backup schema shard commit rollback transaction vacuum",
    "oven flour butter garlic simmer roast basil pepper dough saucepan recipe",
    "goalkeeper referee stadium striker league penalty midfield tournament coach",
    "glacier canyon volcano rainforest desert tide river meadow summit",
    "violin orchestra melody rhythm chord symphony drummer lyrics concert",
]
QUERIES = ["how to back up a replica", "roast garlic recipe", "who won the league", "volcano summit", "symphony"]
CLIENTS = 32


def corpus(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = [t.split() for t in TOPICS]
    return [
        {"id": f"doc{i}", "text": " ".join(rng.choices(rng.choice(words), k=60)) + ".", "metadata": {"i": i}}
        for i in range(n)
    ]


def post_documents(client: httpx.Client, name: str, docs: list[dict]) -> None:
    for start in range(0, len(docs), 100):
        posted = client.post(
            f"/v1/collections/{name}/documents?wait=true", json={"documents": docs[start : start + 100]}
        )
        assert posted.status_code == 200 and posted.json()["complete"], posted.text


def version_of(engine: Engine, name: str, number: int) -> versions.Version:
    with engine.connect() as conn:
        return versions.get_version(conn, collections.get_collection(conn, name).id, number)


def wait_for(engine: Engine, name: str, number: int, done: Callable[[versions.Version], bool], timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not done(found := version_of(engine, name, number)):
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


def search(client: httpx.Client, name: str, query: str) -> dict:
    response = client.post("/v1/search", json={"collection": name, "query": query, "k": 5, "mode": "vector"})
    assert response.status_code == 200, response.text
    return response.json()


def stored_vectors(engine: Engine, name: str) -> dict[tuple[int, int, int], np.ndarray]:
    """Every chunk vector of the collection by (version number, document id, ordinal)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT v.version, ch.document_id, ch.ordinal, CAST(ch.embedding AS real[]) FROM chunks ch"
                " JOIN embedding_versions v ON v.id = ch.version_id JOIN collections c ON c.id = ch.collection_id"
                " WHERE c.name = :n"
            ),
            {"n": name},
        ).all()
    return {(number, doc, ordinal): np.array(vector, dtype=np.float32) for number, doc, ordinal, vector in rows}


class Load:
    """CLIENTS threads searching the collection until stopped; every answer kept with its timing."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.stop = threading.Event()
        self.answers: list[tuple[float, float, str, int, dict | str]] = []  # start, seconds, query, status, body
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self.stop.is_set():
                query = rng.choice(QUERIES)
                started = time.monotonic()
                try:
                    response = client.post(
                        "/v1/search", json={"collection": self.name, "query": query, "k": 5, "mode": "vector"}
                    )
                    answer = (response.status_code, response.json() if response.status_code == 200 else response.text)
                except httpx.HTTPError as exc:
                    answer = (0, repr(exc))
                self.answers.append((started, time.monotonic() - started, query, *answer))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=180)


def test_model_switch_under_load_and_rollback(
    api, start_worker, engine: Engine, model_store: ModelStore, settings: Settings, tiny_encoder: str
) -> None:
    start_worker(ONNXVEC_TASK_DOCUMENTS="4")  # a build of many small steps, with searches between them
    client = httpx.Client(base_url=api.url, timeout=120)
    created = client.post("/v1/collections", json={"name": "switch", "chunk_tokens": 32, "chunk_overlap": 4})
    assert created.status_code == 201 and created.json()["version"] == 1, created.text
    post_documents(client, "switch", corpus(240, seed=1))
    before = {query: search(client, "switch", query) for query in QUERIES}
    assert {answer["version"] for answer in before.values()} == {1}

    refused(client.post("/v1/collections/switch/versions", json={}), 400, None, "invalid_value")
    refused(client.post("/v1/collections/switch/versions", json={"model": "nope"}), 404, "model", "model_not_found")
    refused(client.post("/v1/collections/switch/versions/9/activate"), 404, "version", "version_not_found")
    refused(client.post("/v1/collections/switch/versions/1/pause"), 400, "version", "invalid_value")

    with Load(api.url, "switch") as load:
        time.sleep(2)
        build_started = time.monotonic()
        started = client.post("/v1/collections/switch/versions", json={"model": tiny_encoder})
        assert started.status_code == 202, started.text
        assert (started.json()["version"], started.json()["state"], started.json()["dims"]) == (2, "building", 32)
        refused(client.post("/v1/collections/switch/versions/2/activate"), 400, "version", "invalid_value")
        listed = client.get("/v1/collections/switch/versions").json()["data"]
        assert [(v["version"], v["active"]) for v in listed] == [(1, True), (2, False)]
        # written to both versions while the build runs
        post_documents(client, "switch", [{"id": "late", "text": "A late note about the violin concert."}])
        built = wait_for(engine, "switch", 2, lambda v: v.active)
        switched = time.monotonic()
        time.sleep(2)
    assert built.state == "ready" and built.documents == 241 and built.embedded_chunks > 0

    vectors = stored_vectors(engine, "switch")
    new_model = EmbeddingEngine(model_store.get(tiny_encoder), model_store, settings)
    old_model = EmbeddingEngine(model_store.get("all-MiniLM-L6-v2"), model_store, settings)
    queries = {
        1: dict(zip(QUERIES, old_model.embed(QUERIES).vectors, strict=True)),
        2: dict(zip(QUERIES, new_model.embed(QUERIES).vectors, strict=True)),
    }
    statuses = [status for _, _, _, status, _ in load.answers]
    assert statuses.count(200) == len(statuses), [a for a in load.answers if a[3] != 200][:3]
    during = [seconds for begun, seconds, *_ in load.answers if build_started <= begun <= switched]
    idle = [seconds for begun, seconds, *_ in load.answers if begun < build_started]
    for begun, _, query, _, body in load.answers:
        assert body["data"], body  # never empty
        number = body["version"]
        assert body["model"] == {1: "all-MiniLM-L6-v2", 2: tiny_encoder}[number]
        if begun > switched + 0.5:
            assert number == 2
        for hit in body["data"]:  # each hit is a chunk of the answering version, scored with its model's query
            chunk = vectors[(number, hit["document_id"], hit["chunk"])]
            assert hit["score"] == pytest.approx(float(chunk @ queries[number][query]), abs=1e-4)
    print(
        f"\nswitch under load: {len(statuses)} searches by {CLIENTS} clients, 0 errors, {len(during)} during the"
        f" {switched - build_started:.1f} s build, p50 {np.percentile(during, 50) * 1000:.0f} ms,"
        f" p99 {np.percentile(during, 99) * 1000:.0f} ms (before it: {len(idle)} searches,"
        f" p50 {np.percentile(idle, 50) * 1000:.0f} ms, p99 {np.percentile(idle, 99) * 1000:.0f} ms)"
    )

    # the new version holds the new model's vectors, and search ranks by them
    with engine.connect() as conn:
        sample = conn.execute(
            text(
                "SELECT ch.document_id, ch.ordinal, ch.text FROM chunks ch JOIN embedding_versions v"
                " ON v.id = ch.version_id WHERE v.version = 2 AND ch.collection_id = :c ORDER BY ch.id LIMIT 24"
            ),
            {"c": created_id(engine, "switch")},
        ).all()
    direct = new_model.embed([row.text for row in sample]).vectors
    for row, vector in zip(sample, direct, strict=True):
        np.testing.assert_allclose(vectors[(2, row.document_id, row.ordinal)], vector, atol=1e-5)
    for query in QUERIES:
        found = search(client, "switch", query)
        ranked = sorted(
            ((float(v @ queries[2][query]), key) for key, v in vectors.items() if key[0] == 2), reverse=True
        )
        assert [(h["document_id"], h["chunk"]) for h in found["data"]] == [key[1:] for _, key in ranked[:5]]
    with engine.connect() as conn:  # sent during the build: in both versions, embedded before the build ended
        late, done_at = conn.execute(text("SELECT id, updated_at FROM documents WHERE external_id = 'late'")).one()
    assert (1, late, 0) in vectors and (2, late, 0) in vectors
    assert done_at < built.built_at

    # rollback: the old ranking, exactly
    rolled = client.post("/v1/collections/switch/versions/1/activate")
    assert rolled.status_code == 200 and rolled.json()["active"], rolled.text
    assert client.get("/v1/collections/switch").json()["version"] == 1
    for query, answer in before.items():
        again = search(client, "switch", query)
        assert [(h["external_id"], h["chunk"], h["score"]) for h in again["data"]] == [
            (h["external_id"], h["chunk"], h["score"]) for h in answer["data"]
        ]


def created_id(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return collections.get_collection(conn, name).id


def test_metric_change_reuses_every_vector_pause_resume_and_prune(
    api, start_worker, engine: Engine, settings: Settings
) -> None:
    client = httpx.Client(base_url=api.url, timeout=120)
    assert client.post("/v1/collections", json={"name": "metric"}).status_code == 201
    worker = start_worker()
    post_documents(client, "metric", corpus(60, seed=2))
    cosine = search(client, "metric", "roast garlic recipe")
    worker.kill()  # no worker: a build waits, and can be paused before it starts

    done = onnxvec(settings, "collections", "reembed", "metric", "--metric", "l2")
    assert done.returncode == 0 and "building version 2" in done.stdout, done.stderr
    paused = onnxvec(settings, "collections", "pause", "metric", "2")
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    start_worker()
    time.sleep(3)
    assert (version_of(engine, "metric", 2).state, version_of(engine, "metric", 2).built_documents) == ("paused", 0)
    assert onnxvec(settings, "collections", "resume", "metric", "2").returncode == 0
    built = wait_for(engine, "metric", 2, lambda v: v.active)
    first = version_of(engine, "metric", 1)
    assert built.embedded_chunks == 0 and built.reused_chunks == built.chunks == first.chunks > 0  # nothing embedded

    l2 = search(client, "metric", "roast garlic recipe")
    assert (l2["metric"], l2["version"]) == ("l2", 2)
    assert [h["external_id"] for h in l2["data"]] == [h["external_id"] for h in cosine["data"]]  # unit vectors
    listed = onnxvec(settings, "collections", "versions", "metric")
    assert listed.returncode == 0 and "*   2" in listed.stdout and "ready" in listed.stdout, listed.stdout

    pruned = onnxvec(settings, "collections", "prune-versions", "metric")
    assert pruned.returncode == 0 and "removed versions 1" in pruned.stdout, pruned.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass(:n)"), {"n": versions.index_name(first.id)}).scalar() is None
        assert not conn.execute(text("SELECT 1 FROM chunks WHERE version_id = :v"), {"v": first.id}).first()
    assert search(client, "metric", "roast garlic recipe")["data"] == l2["data"]
    missing = onnxvec(settings, "collections", "activate", "metric", "1")
    assert missing.returncode == 1 and "no version 1" in missing.stderr


def test_kill_9_mid_build_resumes_with_each_document_once(
    api, start_worker, engine: Engine, model_store: ModelStore, settings: Settings, tiny_encoder: str
) -> None:
    env = {"ONNXVEC_TASK_DOCUMENTS": "2", "ONNXVEC_LEASE_SECONDS": "3"}  # small steps; a stalled build resent in 3 s
    worker = start_worker(**env)
    client = httpx.Client(base_url=api.url, timeout=120)
    assert (
        client.post("/v1/collections", json={"name": "killed", "chunk_tokens": 32, "chunk_overlap": 4}).status_code
        == 201
    )
    post_documents(client, "killed", corpus(200, seed=3))
    assert client.post("/v1/collections/killed/versions", json={"model": tiny_encoder}).status_code == 202
    wait_for(engine, "killed", 2, lambda v: v.built_documents >= 30)
    worker.kill()  # SIGKILL of the whole worker mid-build
    killed = time.monotonic()
    assert version_of(engine, "killed", 2).state == "building"
    start_worker(**env)
    built = wait_for(engine, "killed", 2, lambda v: v.active)
    print(f"\nkill -9 mid-build: built and active {time.monotonic() - killed:.1f} s after the kill")

    tiny = EmbeddingEngine(model_store.get(tiny_encoder), model_store, settings)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.content, array_agg(ch.ordinal ORDER BY ch.ordinal) FROM documents d"
                " JOIN chunks ch ON ch.document_id = d.id AND ch.version_id = :v GROUP BY d.id"
            ),
            {"v": built.id},
        ).all()
    assert len(rows) == 200 == built.built_documents
    size = min(32, tiny.passage_tokens)
    for content, ordinals in rows:  # every chunk the new chunking makes, once
        assert ordinals == list(range(len(chunk_text(content, tiny.tokenizer, size, built.chunk_overlap))))
