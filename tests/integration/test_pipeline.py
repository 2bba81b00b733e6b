"""The worker's pipeline in this process, on the real store and model: claims, reuse, leases."""

from __future__ import annotations

import threading
import time

import numpy as np
from sqlalchemy import Engine, text

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.infra import broker
from onnxvec.ingest import reembed, register
from onnxvec.ingest.pipeline import Pipeline
from onnxvec.models.pull import pull_local
from onnxvec.models.store import ModelStore
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents, stats, versions

PARAS = [
    f"Section {i}. " + " ".join(f"Fact {i}.{j} about pgvector indexes and recall." for j in range(12)) for i in range(5)
]


def _doc(name: str, body: str) -> SourceDocument:
    return SourceDocument(name, f"mem://{name}", body, {"name": name})


def _collection(engine: Engine, name: str) -> collections.Collection:
    with engine.begin() as conn:
        return collections.create_collection(
            conn, name, "all-MiniLM-L6-v2", 384, "cosine", chunk_tokens=64, chunk_overlap=8
        )


def _register(engine: Engine, col: collections.Collection, docs: list[SourceDocument]) -> documents.Registered:
    with engine.begin() as conn:
        return documents.register(conn, col, docs)


def _chunks(engine: Engine, doc_id: int) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT ordinal, content_hash FROM chunks WHERE document_id = :d ORDER BY ordinal"), {"d": doc_id}
        )
        return [tuple(r) for r in rows]


def test_only_changed_chunks_are_embedded_again(settings: Settings, engine: Engine, embedder) -> None:
    col = _collection(engine, "reuse")
    pipeline = Pipeline(settings, engine)
    first = _register(engine, col, [_doc("a", "\n\n".join(PARAS)), _doc("b", PARAS[0])])
    assert len(first.queued) == 2 and first.unchanged == 0
    outcome = pipeline.process(first.queued)
    assert outcome.done == 2 and outcome.reused_chunks == 0 and outcome.embedded_chunks >= 6
    before = _chunks(engine, first.queued[0])

    again = _register(engine, col, [_doc("a", "\n\n".join(PARAS)), _doc("b", PARAS[0])])
    assert again.queued == [] and again.unchanged == 2
    assert pipeline.process(first.queued).done == 0  # nothing pending: a duplicate message is harmless

    changed = PARAS[:4] + ["Section 4. A completely different closing paragraph about cooking pasta."]
    third = _register(engine, col, [_doc("a", "\n\n".join(changed))])
    assert third.queued == [first.queued[0]]
    outcome = pipeline.process(third.queued)
    after = _chunks(engine, first.queued[0])
    kept = len([h for h in after if h in before])
    assert outcome.done == 1 and outcome.reused_chunks == kept and kept >= len(before) - 3
    assert outcome.embedded_chunks == len(after) - kept and 0 < outcome.embedded_chunks <= 3
    with engine.connect() as conn:
        hits = chunks.search(conn, col, embedder.embed(["cooking pasta"]).vectors[0], k=1)
    assert "pasta" in hits[0].text


def test_a_lease_keeps_others_out_until_it_expires(settings: Settings, engine: Engine) -> None:
    col = _collection(engine, "leases")
    (doc_id,) = _register(engine, col, [_doc("x", PARAS[1])]).queued
    with engine.begin() as conn:
        assert [c.id for c in documents.claim(conn, [doc_id], "worker-a", lease_seconds=0.5)] == [doc_id]
        assert documents.claim(conn, [doc_id], "worker-b", lease_seconds=60) == []
    time.sleep(0.6)
    late = Pipeline(settings.model_copy(update={"lease_seconds": 60}), engine)
    assert late.process([doc_id]).done == 1  # the expired claim is taken over
    with engine.begin() as conn:  # worker-a wakes up: its write is refused, nothing is duplicated
        assert documents.finish(conn, "worker-a", {doc_id: "stale"}, [(col, {doc_id: []})]) == []
        state, attempts = conn.execute(text("SELECT state, attempts FROM documents WHERE id = :d"), {"d": doc_id}).one()
    assert (state, attempts) == ("done", 2)
    assert len(_chunks(engine, doc_id)) == len({o for o, _ in _chunks(engine, doc_id)}) > 0


def test_a_busy_worker_keeps_its_short_lease_by_heartbeat(settings: Settings, engine: Engine) -> None:
    """A batch running several leases long is never taken over (the heartbeat renews its claims); the
    owner's own live claim is taken again (a task retried after the database came back)."""
    col = _collection(engine, "heartbeat")
    long_text = " ".join(PARAS * 3)  # ~2,000 tokens each: seconds of work on two cores
    ids = _register(engine, col, [_doc(f"h{i}", f"{i} {long_text}") for i in range(8)]).queued
    busy = Pipeline(settings.model_copy(update={"lease_seconds": 0.6}), engine)
    taken: list[list] = []

    def rival() -> None:
        while len(taken) < 20:
            time.sleep(0.1)
            with engine.begin() as conn:
                taken.append(documents.claim(conn, ids, "worker-b", lease_seconds=60))

    thread = threading.Thread(target=rival)
    started = time.monotonic()
    thread.start()
    outcome = busy.process(ids)
    thread.join()
    assert time.monotonic() - started > 3 * 0.6  # the batch outlived its lease several times over
    assert outcome.done == len(ids) and not any(taken)
    (doc_id,) = _register(engine, col, [_doc("again", PARAS[2])]).queued
    with engine.begin() as conn:
        assert [c.id for c in documents.claim(conn, [doc_id], "worker-a", lease_seconds=60)] == [doc_id]
        assert [c.id for c in documents.claim(conn, [doc_id], "worker-a", lease_seconds=60)] == [doc_id]
        assert documents.claim(conn, [doc_id], "worker-b", lease_seconds=60) == []


def test_permanent_errors_are_recorded_and_retry_requeues(settings: Settings, engine: Engine) -> None:
    col = _collection(engine, "errors")
    docs = [_doc("ok", PARAS[2]), SourceDocument("bad", "mem://bad", "", {}, "binary file (NUL bytes), not text")]
    registered = _register(engine, col, docs)
    assert len(registered.queued) == 1 and registered.failed == 1
    assert Pipeline(settings, engine).process(registered.queued).done == 1
    with engine.begin() as conn:
        (failure,) = stats.failures(conn, col)
        assert failure["external_id"] == "bad" and failure["error"] == "binary file (NUL bytes), not text"
        retried = documents.retry(conn, col)
    outcome = Pipeline(settings, engine).process(retried)  # still no content: fails again with its reason
    assert outcome.failed == 1 and outcome.done == 0
    with engine.connect() as conn:
        assert stats.counts(conn, col)["documents"] == {"pending": 0, "processing": 0, "done": 1, "failed": 1}


def test_a_blank_document_fails_alone_and_the_rest_reach_every_version(
    settings: Settings, engine: Engine, model_store: ModelStore
) -> None:
    """With a second version being built, one batch writes each good document to both versions and
    fails the blank one once, with its reason."""
    col = _collection(engine, "blank")
    with engine.begin() as conn:
        second = reembed.start(conn, settings, col, metric="l2")
    registered = _register(engine, col, [_doc("ok", PARAS[3]), _doc("blank", " \n\n \t ")])
    outcome = Pipeline(settings, engine).process(registered.queued)
    assert (outcome.done, outcome.failed) == (1, 1)
    assert outcome.reused_chunks == outcome.embedded_chunks > 0  # the l2 version re-uses the cosine one's vectors
    with engine.connect() as conn:
        (failure,) = stats.failures(conn, col)
        assert (failure["external_id"], failure["error"]) == ("blank", "empty text: nothing to embed")
        per_version = conn.execute(
            text("SELECT version_id, count(*) FROM chunks WHERE collection_id = :c GROUP BY 1 ORDER BY 1"),
            {"c": col.id},
        ).all()
    assert [version for version, _ in per_version] == [col.version_id, second.id]
    assert per_version[0][1] == per_version[1][1] > 0


def test_a_build_whose_model_is_gone_pauses_with_the_reason(
    settings: Settings, engine: Engine, model_store: ModelStore
) -> None:
    col = _collection(engine, "model-gone")
    pull_local(model_store, "doomed-model", model_store.path("all-MiniLM-L6-v2"))
    _register(engine, col, [_doc("one", PARAS[0])])
    pipeline = Pipeline(settings, engine)
    with engine.begin() as conn:
        ids = conn.execute(text("SELECT id FROM documents WHERE collection_id = :c"), {"c": col.id}).scalars().all()
    assert pipeline.process(ids).done == 1
    with engine.begin() as conn:
        version = reembed.start(conn, settings, col, model="doomed-model")
    model_store.remove("doomed-model")  # removed from this worker's store before the build reaches it
    assert reembed.build_step(pipeline, version.id, 0, 8) == ("paused", 0)
    with engine.begin() as conn:
        paused = versions.get_version(conn, col.id, version.version)
        assert paused.state == "paused" and "embedding model unavailable" in paused.error
        reembed.pause(conn, col, version.version, paused=False)  # resume: the reason is cleared
        assert versions.get_version(conn, col.id, version.version).error is None


def test_prune_removes_documents_whose_files_are_gone(settings: Settings, engine: Engine, endpoints, tmp_path) -> None:
    app = broker.make_app(settings, endpoints.redis_url)
    for name in ("keep.txt", "gone.txt"):
        (tmp_path / name).write_text(f"{name} holds a few words about vectors.")
    first = register.ingest(settings, engine, app, [str(tmp_path)], "prune", prune=True)
    assert len(first.queued) == 2 and first.pruned == 0
    (tmp_path / "gone.txt").unlink()
    second = register.ingest(settings, engine, app, [str(tmp_path)], "prune", prune=True)
    assert second.pruned == 1 and second.unchanged == 1
    with engine.connect() as conn:
        left = (
            conn.execute(
                text(
                    "SELECT external_id FROM documents d JOIN collections c ON c.id = d.collection_id"
                    " WHERE c.name = 'prune'"
                )
            )
            .scalars()
            .all()
        )
    assert [name.rsplit("/", 1)[1] for name in left] == ["keep.txt"]


def test_a_collection_whose_model_is_missing_fails_alone(settings: Settings, engine: Engine, embedder) -> None:
    good = _collection(engine, "model-ok")
    with engine.begin() as conn:
        bad = collections.create_collection(conn, "model-missing", "no-such-model", 384, "cosine")
    ids = _register(engine, bad, [_doc("x", PARAS[1])]).queued + _register(engine, good, [_doc("y", PARAS[2])]).queued
    outcome = Pipeline(settings, engine).process(ids)  # one task holding both, as the reconciler may send
    assert (outcome.done, outcome.failed) == (1, 1)
    with engine.connect() as conn:
        (failure,) = stats.failures(conn, bad)
        assert "embedding model unavailable" in failure["error"] and "no-such-model" in failure["error"]
        assert stats.counts(conn, good)["documents"]["done"] == 1


class _Broker:
    """Stands in for Celery's send_task only: a worker that takes each message the moment it is sent."""

    def __init__(self, engine: Engine, fail: bool = False) -> None:
        self.engine, self.fail, self.claimed = engine, fail, []

    def send_task(self, name: str, args: list) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        ids = args[0]
        with self.engine.begin() as conn:
            marked = conn.execute(
                text("SELECT count(*) FROM documents WHERE id = ANY(:ids) AND enqueued_at IS NOT NULL"), {"ids": ids}
            ).scalar()
            assert marked == len(ids)  # committed before the message exists: no row locks left to skip
            self.claimed += [c.id for c in documents.claim(conn, ids, "fast-worker", 60)]


def test_a_worker_taking_a_message_at_once_can_claim_all_its_documents(settings: Settings, engine: Engine) -> None:
    col = _collection(engine, "dispatch-order")
    ids = _register(engine, col, [_doc(f"order-{i}", f"Text number {i}.") for i in range(5)]).queued
    broker = _Broker(engine)
    register.dispatch(engine, broker, ids, per_task=2)
    assert sorted(broker.claimed) == sorted(ids)


def test_a_failed_send_leaves_documents_to_the_next_reconcile(settings: Settings, engine: Engine) -> None:
    col = _collection(engine, "dispatch-fail")
    ids = _register(engine, col, [_doc(f"fail-{i}", f"Other text {i}.") for i in range(3)]).queued
    try:
        register.dispatch(engine, _Broker(engine, fail=True), ids, per_task=2)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the send error must reach the caller")
    with engine.begin() as conn:
        assert set(ids) <= set(documents.stale(conn, requeue_after=600))


def test_passages_get_the_models_passage_prefix(settings: Settings, engine: Engine, model_store: ModelStore) -> None:
    """e5/bge-style models: stored chunks are embedded as "passage: ..." (queries get "query: ..."), and
    the prefix takes its room from the chunk, so no chunk loses its end to truncation."""
    pull_local(
        model_store,
        "prefixed",
        model_store.path("all-MiniLM-L6-v2"),
        query_prefix="query: ",
        passage_prefix="passage: ",
    )
    prefixed = EmbeddingEngine(model_store.get("prefixed"), model_store, settings)
    with engine.begin() as conn:
        col = collections.create_collection(
            conn, "prefixed", "prefixed", 384, "cosine", chunk_tokens=256, chunk_overlap=0
        )
    (doc_id,) = _register(engine, col, [_doc("long", " ".join(PARAS * 3))]).queued
    assert Pipeline(settings, engine).process([doc_id]).done == 1
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT text, token_count, embedding::real[] AS embedding FROM chunks"
                " WHERE document_id = :d ORDER BY ordinal"
            ),
            {"d": doc_id},
        ).all()
    assert len(rows) >= 2 and all(row.token_count <= 256 for row in rows)
    assert max(row.token_count for row in rows) > 250  # full chunks: the prefix's tokens came out of the chunk
    texts = [row.text for row in rows]
    stored = np.array([row.embedding for row in rows], dtype=np.float32)
    with_prefix = prefixed.embed(["passage: " + t for t in texts])
    assert not any(with_prefix.truncated)
    np.testing.assert_allclose(stored, with_prefix.vectors, atol=1e-5)
    assert np.abs(stored - prefixed.embed(texts).vectors).max() > 1e-2
