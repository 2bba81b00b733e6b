"""HTML pages through the real worker: chunks start at sections, and /v1/search hits carry title and section."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.infra import broker, embedded
from onnxvec.ingest import register
from onnxvec.sources.files import INDEX_PAGE
from onnxvec.storage import collections, stats
from tests.helpers import WorkerProcess
from tests.unit.test_html import INDEX, PAGE


def test_html_hits_carry_the_page_title_and_their_section(
    settings: Settings,
    engine: Engine,
    endpoints: embedded.Endpoints,
    api,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    (tmp_path / "runtime-config-resource.html").write_text(PAGE)
    (tmp_path / "bookindex.html").write_text(INDEX)
    with engine.begin() as conn:  # chunks smaller than the page, so that it has several sections
        register.new_collection(conn, settings, "manual", None, None, chunk_tokens=56, chunk_overlap=8)
    start_worker()
    app = broker.make_app(settings, endpoints.redis_url)
    report = register.ingest(settings, engine, app, [str(tmp_path)], "manual")
    deadline = time.monotonic() + 300
    while True:
        with engine.connect() as conn:
            collection = collections.get_collection(conn, "manual")
            counts = stats.counts(conn, collection)["documents"]
        if counts["pending"] + counts["processing"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert counts == {"pending": 0, "processing": 0, "done": 1, "failed": 1}, report
    response = httpx.post(
        api.url + "/v1/search",
        json={"collection": "manual", "query": "memory a sort uses before writing temporary disk files", "k": 10},
    )
    assert response.status_code == 200, response.text
    hits = response.json()["data"]
    memory = "20.4. Resource Consumption › 20.4.1. Memory"
    assert hits[0]["section"] == f"{memory} › work_mem (integer)"
    assert hits[0]["text"].startswith("#### work_mem (integer)\nSets the base maximum amount of memory")
    assert sorted(hit["section"] for hit in hits) == [
        f"{memory} › shared_buffers (integer)",
        f"{memory} › work_mem (integer)",
        "20.4. Resource Consumption › 20.4.2. Disk",
        "20.4. Resource Consumption › 20.4.2. Disk",
    ]
    assert {hit["title"] for hit in hits} == {"20.4. Resource Consumption"}  # on every chunk, not only the first
    assert {Path(hit["external_id"]).name for hit in hits} == {"runtime-config-resource.html"}
    assert not any(word in hit["text"] for hit in hits for word in ("Prev", "Next", "Home", "20.5. Write Ahead Log"))
    with engine.connect() as conn:
        (failed,) = stats.failures(conn, collection)
    assert Path(failed["external_id"]).name == "bookindex.html" and failed["error"] == INDEX_PAGE
