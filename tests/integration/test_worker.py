"""Real worker processes on the real embedded Postgres and Redis: ingest, faults, exactly-once."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.infra import broker, embedded
from onnxvec.ingest import register
from onnxvec.storage import chunks, collections, stats
from tests.helpers import WorkerProcess, onnxvec

pytestmark = pytest.mark.slow  # minutes: `pytest -m 'not slow'` leaves it out

TOPICS = [
    "database index query replica backup schema shard commit rollback transaction vacuum",
    "oven flour butter garlic simmer roast basil pepper dough saucepan recipe",
    "goalkeeper referee stadium striker league penalty midfield tournament coach",
    "portfolio dividend inflation bond equity interest ledger audit revenue",
    "glacier canyon volcano rainforest desert tide river meadow summit",
    "violin orchestra melody rhythm chord symphony drummer lyrics concert",
    "enzyme protein neuron mitochondria genome cell membrane bacteria",
    "airport passport luggage hotel itinerary museum ferry train",
]
PLANTED = "The purple giraffe taught quantum origami to seven sleepy penguins."


def _text(rng: random.Random, paragraphs: int, words: int) -> str:
    """Paragraphs of words from one topic each: varied like real documents, cheap to generate."""
    vocab = [t.split() for t in TOPICS]
    return "\n\n".join(" ".join(rng.choices(rng.choice(vocab), k=words)) + "." for _ in range(paragraphs))


def write_corpus(root: Path, seed: int = 0) -> int:
    """300+ files of six types; returns how many documents they hold."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    for i in range(100):
        (root / f"note{i}.txt").write_text(_text(rng, 2, 40))
    for i in range(80):
        (root / "md" / f"page{i}.md").parent.mkdir(exist_ok=True)
        (root / "md" / f"page{i}.md").write_text(f"# Page {i}\n\n" + _text(rng, 2, 30))
    for i in range(60):
        (root / f"site{i}.html").write_text(
            f"<html><head><script>x={i}</script></head><body><p>{_text(rng, 1, 50)}</p></body></html>"
        )
    for i in range(30):
        (root / f"one{i}.json").write_text(json.dumps({"id": f"j{i}", "text": _text(rng, 1, 40), "team": "a"}))
    for i in range(30):
        rows = [{"id": f"{i}-{k}", "text": _text(rng, 1, 30)} for k in range(3)]
        (root / f"many{i}.jsonl").write_text("\n".join(map(json.dumps, rows)))
    for i in range(20):
        (root / f"table{i}.csv").write_text("id,text\n" + "".join(f"r{k},{_text(rng, 1, 25)}\n" for k in range(2)))
    (root / "note42.txt").write_text(_text(rng, 1, 40) + "\n\n" + PLANTED)
    return 100 + 80 + 60 + 30 + 90 + 40


def _ingest(settings: Settings, engine: Engine, endpoints: embedded.Endpoints, path: Path, name: str):
    app = broker.make_app(settings, endpoints.redis_url)
    return register.ingest(settings, engine, app, [str(path)], name)


def _wait_until(engine: Engine, name: str, done: Callable[[dict], bool], timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            counts = stats.counts(conn, collections.get_collection(conn, name))
        if done(counts["documents"]):
            return counts
        assert time.monotonic() < deadline, counts
        time.sleep(0.3)


def _all_finished(states: dict) -> bool:
    return states["pending"] + states["processing"] == 0


def _assert_exactly_once(engine: Engine, name: str, total: int) -> None:
    """Every document done once: its chunks numbered 0..n-1 with no gap and no duplicate."""
    with engine.connect() as conn:
        col = collections.get_collection(conn, name)
        assert stats.counts(conn, col)["documents"] == {"pending": 0, "processing": 0, "done": total, "failed": 0}
        bad = conn.execute(
            text(
                "SELECT d.id FROM documents d LEFT JOIN chunks c ON c.document_id = d.id WHERE d.collection_id = :c"
                " GROUP BY d.id HAVING count(c.id) = 0 OR count(DISTINCT c.ordinal) <> count(c.id)"
                " OR max(c.ordinal) <> count(c.id) - 1"
            ),
            {"c": col.id},
        ).all()
    assert bad == []


def test_corpus_is_embedded_and_reingest_embeds_only_changes(
    settings: Settings,
    engine: Engine,
    endpoints: embedded.Endpoints,
    embedder: EmbeddingEngine,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    total = write_corpus(tmp_path / "corpus")
    worker = start_worker()
    report = _ingest(settings, engine, endpoints, tmp_path / "corpus", "corpus")
    assert report.files == 320 and len(report.queued) == total and report.unsupported == []
    _wait_until(engine, "corpus", _all_finished)
    _assert_exactly_once(engine, "corpus", total)
    with engine.connect() as conn:
        col = collections.get_collection(conn, "corpus")
        top = chunks.search(conn, col, embedder.embed(["giraffe teaching origami to penguins"]).vectors[0], k=1)[0]
        assert top.text.endswith(PLANTED) and top.external_id.endswith("note42.txt")
        before = dict(
            conn.execute(text("SELECT id, document_id FROM chunks WHERE collection_id = :c"), {"c": col.id}).all()
        )

    again = _ingest(settings, engine, endpoints, tmp_path / "corpus", "corpus")
    assert again.queued == [] and again.unchanged == total

    note = tmp_path / "corpus" / "note7.txt"
    first, second = note.read_text().split("\n\n")
    note.write_text(first + "\n\nA brand new paragraph about sourdough bread and rye flour.")
    changed = _ingest(settings, engine, endpoints, tmp_path / "corpus", "corpus")
    assert len(changed.queued) == 1 and changed.unchanged == total - 1
    _wait_until(engine, "corpus", _all_finished)
    _assert_exactly_once(engine, "corpus", total)
    with engine.connect() as conn:
        after = dict(
            conn.execute(text("SELECT id, document_id FROM chunks WHERE collection_id = :c"), {"c": col.id}).all()
        )
    untouched = {cid: d for cid, d in before.items() if d != changed.queued[0]}
    assert all(after.get(cid) == d for cid, d in untouched.items())  # no other document's chunks were rewritten
    outcomes = re.findall(
        r"embedded Outcome\(done=1, .*embedded_chunks=(\d+), reused_chunks=(\d+)\)", worker.log.read_text()
    )
    assert outcomes and int(outcomes[-1][0]) == 1  # the one changed chunk, not the whole document


FAULT_DOCUMENTS = 400
RECOVERY_SECONDS = 60  # from the fault to every document done, with the default lease and reconciler


@pytest.fixture
def mid_ingest(
    settings: Settings,
    engine: Engine,
    endpoints: embedded.Endpoints,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> Callable[[str], tuple[list[WorkerProcess], int]]:
    """Two worker processes (one ONNX thread each) and 400 documents of ~250 tokens; returns once
    50 are done, so the fault lands mid-way."""

    def run(name: str) -> tuple[list[WorkerProcess], int]:
        total = _long_corpus(tmp_path / name, FAULT_DOCUMENTS)
        workers = [start_worker(ONNXVEC_THREADS="1"), start_worker(ONNXVEC_THREADS="1")]
        _ingest(settings, engine, endpoints, tmp_path / name, name)
        _wait_until(engine, name, lambda s: s["done"] >= 50)
        return workers, total

    return run


def _finishes_exactly_once(engine: Engine, name: str, total: int, fault: str, started: float) -> None:
    with engine.connect() as conn:
        assert stats.counts(conn, collections.get_collection(conn, name))["documents"]["done"] < total  # mid-ingest
    _wait_until(engine, name, _all_finished)
    _assert_exactly_once(engine, name, total)
    with engine.connect() as conn:
        stored = stats.counts(conn, collections.get_collection(conn, name))["chunks"]
    seconds = round(time.monotonic() - started, 1)
    figures = {"fault": fault, "documents": total, "chunks": stored, "lost": 0, "duplicate_chunks": 0}
    print(json.dumps(figures | {"seconds_from_fault": seconds}))
    assert seconds <= RECOVERY_SECONDS, figures


def test_kill_9_worker_mid_ingest_then_another_finishes(
    engine: Engine, start_worker: Callable[..., WorkerProcess], mid_ingest
) -> None:
    (first, _), total = mid_ingest("kill")
    started = time.monotonic()
    first.kill()  # SIGKILL to the whole worker: a claimed batch is left mid-flight
    start_worker(ONNXVEC_THREADS="1")
    _finishes_exactly_once(engine, "kill", total, "kill -9 of one of two workers", started)


def test_flushall_mid_ingest_the_reconciler_finishes(engine: Engine, endpoints: embedded.Endpoints, mid_ingest) -> None:
    _, total = mid_ingest("flush")
    started = time.monotonic()
    redis.Redis.from_url(endpoints.redis_url).flushall()
    _finishes_exactly_once(engine, "flush", total, "redis FLUSHALL", started)


def test_postgres_restart_mid_ingest_the_worker_retries(
    settings: Settings, engine: Engine, endpoints: embedded.Endpoints, mid_ingest
) -> None:
    workers, total = mid_ingest("pg")
    started = time.monotonic()
    assert embedded.stop_postgres(settings)
    deadline = time.monotonic() + 60  # down until a worker has met the outage and scheduled a retry
    while not any("transient error" in w.log.read_text() for w in workers):
        assert time.monotonic() < deadline, workers[0].log.read_text()[-3000:]
        time.sleep(0.2)
    assert embedded.start_postgres(settings) == endpoints.database_url
    _finishes_exactly_once(engine, "pg", total, "postgres stop + start", started)


def test_bad_files_fail_clearly_and_the_rest_is_embedded(
    settings: Settings,
    endpoints: embedded.Endpoints,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    rng = random.Random(3)
    for i in range(20):
        (root / f"good{i}.txt").write_text(_text(rng, 2, 30))
    (root / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (root / "latin1.txt").write_bytes("naïve café".encode("latin-1"))
    (root / "empty.txt").write_text("")
    with (root / "huge.txt").open("w") as fh:
        fh.write("lorem ipsum dolor " * (50 * 1024 * 1024 // 18 + 1))
    start_worker()
    done = onnxvec(settings, "ingest", str(root), "--collection", "mixed", "--wait", "--timeout", "300")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "4 documents failed" in done.stderr and "Traceback" not in done.stderr
    # no terminal: plain progress lines (a bar prints nothing to a pipe), by text bytes
    assert re.search(r"embedded (\d+)/\1 documents, [\d.]+/[\d.]+ MB of text \(100%\), .* 4 errors", done.stderr)
    status = json.loads(onnxvec(settings, "status", "--collection", "mixed", "--failed", "--json").stdout)
    assert status["documents"] == {"pending": 0, "processing": 0, "done": 20, "failed": 4}
    errors = {Path(row["external_id"]).name: row["error"] for row in status["failed"]}
    assert errors == {
        "binary.txt": "binary file (a NUL byte at offset 0), not text",
        "latin1.txt": "not valid UTF-8: byte 0xef at offset 2",
        "empty.txt": "empty text",
        "huge.txt": "file is 52.4 MB, over the 10.5 MB limit",
    }


def _long_corpus(root: Path, count: int) -> int:
    """Documents of ~250 tokens each: enough work that a fault lands mid-ingest."""
    rng = random.Random(count)
    root.mkdir()
    for i in range(count):
        (root / f"doc{i}.txt").write_text(_text(rng, 4, 55))
    return count
