"""Re-embedding a collection against ingesting it, in one run on the same corpus and worker.

A real `onnxvec worker` ingests N documents (bench/ingest.py's corpus); then the collection is
re-embedded into a new version with another model (`--model`, default all-MiniLM-L6-v2-fp32: the
same tokenizer, so the same chunks) while the worker keeps running; then a metric-only version re-uses
every vector. Prints documents/s of the build against the ingest (the reference), and how long the
metric change took against the build.

Usage: python bench/reembed.py [--docs 1000] [--model all-MiniLM-L6-v2-fp32]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for bench and tests.helpers
from bench.ingest import ingest_and_wait, prepared, write_corpus  # noqa: E402
from onnxvec.config import Settings  # noqa: E402
from onnxvec.infra import broker, embedded  # noqa: E402
from onnxvec.ingest import reembed  # noqa: E402
from onnxvec.models.pull import pull  # noqa: E402
from onnxvec.models.store import ModelStore  # noqa: E402
from onnxvec.storage import collections, versions  # noqa: E402
from tests.helpers import WorkerProcess  # noqa: E402


def build(settings: Settings, engine: Engine, name: str, **change: object) -> tuple[float, versions.Version]:
    """Start a version with `change` and wait until it is active: seconds, and the version."""
    started = time.perf_counter()
    with engine.begin() as conn:
        version = reembed.start(conn, settings, collections.get_collection(conn, name), **change)
    broker.enqueue_build(broker.make_app(settings, embedded.ensure_services(settings).redis_url), version.id)
    while True:
        with engine.connect() as conn:
            found = versions.get_version(conn, version.collection_id, version.version)
        if found.active:
            return time.perf_counter() - started, found
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--model", default="all-MiniLM-L6-v2-fp32")
    args = parser.parse_args()
    settings, engine, name = prepared()
    pull(ModelStore(settings.models_dir), args.model)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus", args.docs)
        worker = WorkerProcess(settings, Path(tmp) / "worker.log", ONNXVEC_TASK_DOCUMENTS=str(settings.task_documents))
        try:
            ingest_s, report = ingest_and_wait(settings, engine, corpus, name)
            build_s, model_version = build(settings, engine, name, model=args.model)
            metric_s, metric_version = build(settings, engine, name, metric="ip")
        finally:
            worker.kill(signal.SIGTERM)
    with engine.begin() as conn:
        collections.drop_collection(conn, name)
    docs = len(report.queued)
    print(f"ingest: {docs} documents in {ingest_s:.1f} s ({docs / ingest_s:.1f}/s)")
    print(
        f"re-embed to {args.model}: {model_version.built_documents} documents, {model_version.embedded_chunks}"
        f" chunks embedded in {build_s:.1f} s ({model_version.built_documents / build_s:.1f}/s)"
    )
    print(f"metric change: {metric_version.embedded_chunks} chunks embedded, {metric_s:.1f} s")
    print(
        json.dumps(
            {
                "documents": docs,
                "ingest_docs_per_s": round(docs / ingest_s, 1),
                "reembed_docs_per_s": round(model_version.built_documents / build_s, 1),
                "reembed_vs_ingest": round(ingest_s / build_s, 3),
                "metric_change_s": round(metric_s, 2),
                "metric_change_vs_reembed": round(metric_s / build_s, 3),
                "metric_change_embedded_chunks": metric_version.embedded_chunks,
            }
        )
    )


if __name__ == "__main__":
    main()
