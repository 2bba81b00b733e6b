"""Table sync against file ingest, and the lag from a committed change to a searchable one.

One real `onnxvec worker` embeds the same texts twice: as files (`ingest`) and as the rows of a table
(`sources add`: triggers, backfill, the workers drain the change queue). The ratio is rows/s over
files/s (goal >= 0.9). Then a writer changes 50 rows a second for 60 s (updates of the text and new
rows) while the worker runs; each change's lag is the time from its commit to its document being
embedded (state done with the new text), p50 and p99 (goal p99 < 2 s).

Usage: python bench/sync.py [--docs 2000] [--rate 50] [--seconds 60] [--poll]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text

from onnxvec.config import Settings
from onnxvec.infra import broker, embedded
from onnxvec.ingest import register, sync
from onnxvec.storage import collections

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.helpers
from ingest import prepared, write_corpus  # noqa: E402  (bench/ingest.py: the same corpus and set-up)

from tests.helpers import WorkerProcess  # noqa: E402  (the same starters as the tests)


def _settled(engine: Engine, prefix: str, expected: int) -> bool:
    with engine.connect() as conn:
        queued = conn.execute(text("SELECT count(*) FROM table_changes")).scalar_one()
        done = conn.execute(
            text("SELECT count(*) FROM documents WHERE starts_with(external_id, :p) AND state = 'done'"),
            {"p": prefix},
        ).scalar_one()
    return queued == 0 and done >= expected


def files_run(settings: Settings, engine: Engine, corpus: Path, name: str) -> float:
    app = broker.make_app(settings, embedded.ensure_services(settings).redis_url)
    started = time.perf_counter()
    report = register.ingest(settings, engine, app, [str(corpus)], name)
    register.wait(engine, None, report.queued, lambda counts: None, poll_seconds=0.2)
    return time.perf_counter() - started


def rows_run(settings: Settings, engine: Engine, corpus: Path, name: str, poll: bool) -> float:
    texts = [path.read_text() for path in sorted(corpus.iterdir())]
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))  # a name this script makes: bench_<time>
        conn.execute(
            text(f"CREATE TABLE {name} (id int PRIMARY KEY, body text NOT NULL, updated_at timestamptz DEFAULT now())")
        )
        conn.execute(
            text(f"INSERT INTO {name} VALUES (:id, :body)"), [{"id": i, "body": t} for i, t in enumerate(texts)]
        )
    app = broker.make_app(settings, embedded.ensure_services(settings).redis_url)
    started = time.perf_counter()
    with engine.begin() as conn:
        sync.add_source(
            conn, settings, name, name, name, text_column="body", poll_column="updated_at" if poll else None
        )
    app.send_task(broker.SYNC_TASK)
    while not _settled(engine, f"{name}:", len(texts)):
        time.sleep(0.2)
    return time.perf_counter() - started


def lag_run(engine: Engine, name: str, rows: int, rate: float, seconds: float) -> list[float]:
    """Changes at `rate` per second for `seconds` (every tenth a new row); each one's commit-to-embedded lag."""
    committed: dict[str, float] = {}  # content hash -> commit time
    lags: list[float] = []
    stop = threading.Event()

    def write() -> None:
        n, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            body = f"Change {n}: the {n % 7}th harbor lantern was repainted at dawn by crew {n}."
            key = rows + n if n % 10 == 0 else n % rows
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"INSERT INTO {name} VALUES (:id, :body) ON CONFLICT (id)"
                        " DO UPDATE SET body = :body, updated_at = now()"
                    ),
                    {"id": key, "body": body},
                )
            committed[hashlib.sha256(body.encode()).hexdigest()] = time.monotonic()
            n += 1
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    deadline = None
    while committed or not stop.is_set():
        if stop.is_set():
            deadline = deadline or time.monotonic() + 30
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(committed)} changes not embedded 30 s after the writer stopped")
        waiting = list(committed)
        with engine.connect() as conn:
            done = conn.execute(
                text("SELECT content_hash FROM documents WHERE state = 'done' AND content_hash = ANY(:h)"),
                {"h": waiting},
            ).scalars()
            now = time.monotonic()
            for digest in done:
                lags.append(now - committed.pop(digest))
        time.sleep(0.05)
    writer.join()
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50, help="row changes per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--poll", action="store_true", help="sync by polling updated_at instead of triggers")
    args = parser.parse_args()
    settings, engine, name = prepared()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus", args.docs)
        worker = WorkerProcess(settings, Path(tmp) / "worker.log", ONNXVEC_TASK_DOCUMENTS=str(settings.task_documents))
        try:
            files_s = files_run(settings, engine, corpus, f"{name}_files")
            rows_s = rows_run(settings, engine, corpus, name, args.poll)
            lags = np.array(lag_run(engine, name, args.docs, args.rate, args.seconds))
        finally:
            worker.kill(signal.SIGTERM)
    with engine.begin() as conn:
        sync.remove_source(conn, name, drop_embeddings=True)
        conn.execute(text(f"DROP TABLE {name}"))
        for collection in (name, f"{name}_files"):
            collections.drop_collection(conn, collection)
    print(f"{args.docs} texts: files {files_s:.1f} s, rows {rows_s:.1f} s; {len(lags)} changes at {args.rate}/s")
    print(
        json.dumps(
            {
                "mode": "poll" if args.poll else "triggers",
                "files_per_s": round(args.docs / files_s, 1),
                "rows_per_s": round(args.docs / rows_s, 1),
                "ratio": round(files_s / rows_s, 4),
                "changes": len(lags),
                "lag_p50_s": round(float(np.percentile(lags, 50)), 3),
                "lag_p99_s": round(float(np.percentile(lags, 99)), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
