"""The `onnxvec` command as a user runs it: a subprocess with ONNXVEC_HOME set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import text

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.infra import embedded
from onnxvec.infra.embedded import Endpoints
from onnxvec.models.store import ModelStore
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents
from tests.helpers import cli_env, free_port, onnxvec


def test_embed_json(settings: Settings, embedder: EmbeddingEngine) -> None:
    texts = ["The car sped down the highway.", "word " * 400]
    done = onnxvec(settings, "embed", *texts, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model"] == "all-MiniLM-L6-v2"
    assert out["tokens"] == [9, 256] and out["truncated"] == [False, True]
    np.testing.assert_allclose(np.array(out["embeddings"]), embedder.embed(texts).vectors, atol=1e-6)


def test_models_show_and_errors(settings: Settings, embedder: EmbeddingEngine) -> None:
    shown = onnxvec(settings, "models", "show", "all-MiniLM-L6-v2")
    assert shown.returncode == 0
    manifest = json.loads(shown.stdout)
    assert manifest["corrupt_files"] == []
    # which variant runs on this CPU, and why (measured at pull)
    runs = manifest["runs_here"]
    assert runs["variant"] == manifest["precision"]["variant"] and runs["why"] == manifest["precision"]["reason"]
    missing = onnxvec(settings, "models", "show", "nope")
    assert missing.returncode == 1 and "does not exist here" in missing.stderr and "Traceback" not in missing.stderr
    assert "models pull" not in missing.stderr and "all-MiniLM-L6-v2" in missing.stderr
    catalog = onnxvec(settings, "models", "show", "all-MiniLM-L6-v2-int8")
    assert catalog.returncode == 1 and "onnxvec models pull all-MiniLM-L6-v2-int8" in catalog.stderr


def test_services_status_and_collections(settings: Settings, endpoints: Endpoints) -> None:
    status = json.loads(onnxvec(settings, "services", "status", "--json").stdout)
    assert [(s["name"], s["running"], s["embedded"]) for s in status] == [
        ("postgres", True, True),
        ("redis", True, True),
    ]
    created = onnxvec(settings, "collections", "create", "cli_docs", "--metric", "l2")
    assert created.returncode == 0, created.stderr
    assert "384 dims, l2" in created.stdout
    again = onnxvec(settings, "collections", "create", "cli_docs")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "cli_docs" in onnxvec(settings, "collections", "list").stdout


def test_a_collection_takes_its_chunking(settings: Settings, endpoints: Endpoints, engine) -> None:
    """`collections create --chunk-tokens/--chunk-overlap` is kept per collection; nonsense is refused."""
    made = onnxvec(settings, "collections", "create", "small_chunks", "--chunk-tokens", "96", "--chunk-overlap", "8")
    assert made.returncode == 0 and "chunks of 96 tokens (8 shared)" in made.stdout, made.stderr
    with engine.connect() as conn:
        assert collections.get_collection(conn, "small_chunks").chunk_tokens == 96
    for tokens, overlap in (("64", "64"), ("4", "0"), ("100000", "0"), ("64", "-1")):
        bad = onnxvec(
            settings, "collections", "create", "bad_chunks", "--chunk-tokens", tokens, "--chunk-overlap", overlap
        )
        assert bad.returncode == 1 and "chunks are 8 to 8192 tokens" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_unknown_metric_is_a_clear_error(settings: Settings, endpoints: Endpoints) -> None:
    done = onnxvec(settings, "collections", "create", "bad_metric", "--metric", "hamming")
    assert done.returncode == 1 and "suits" in done.stderr and "Traceback" not in done.stderr


def test_up_runs_in_the_foreground_and_ctrl_c_stops_it(tmp_path: Path, model_store: ModelStore) -> None:
    """`make up`'s command: services, schema and model come up; SIGINT stops the embedded servers."""
    port = free_port()
    own = Settings(home=tmp_path / "h", database_url=None, redis_url=None, api_port=port)
    shutil.copytree(model_store.path("all-MiniLM-L6-v2"), own.models_dir / "all-MiniLM-L6-v2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxvec", "up"],
        env=cli_env(own) | {"ONNXVEC_API_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C" in line:
                break
        assert any("model all-MiniLM-L6-v2 (384 dims)" in line for line in lines), lines
        worker_pid = int(next(line for line in lines if "worker pid" in line).split("worker pid ")[1].split(",")[0])
        os.kill(worker_pid, 0)  # the worker runs
        assert all(s.running for s in embedded.services_status(own))
        assert f"http://127.0.0.1:{port}/v1" in "".join(lines)
        deadline = time.monotonic() + 60
        while True:  # the API answers once it has loaded the model
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": "up"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not come up"
                time.sleep(0.3)
        assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 384
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    assert "stopping: api, worker, postgres, redis" in rest
    assert not any(s.running for s in embedded.services_status(own))


def test_ingest_from_stdin_and_unsupported_files(settings: Settings, endpoints: Endpoints, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "onnxvec", "ingest", "-", "--collection", "piped"],
        input="Text piped in on standard input.",
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "1 documents: 1 queued" in done.stdout
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    shown = onnxvec(settings, "ingest", str(tmp_path), "--collection", "piped")
    assert shown.returncode == 0 and f"unsupported file type, not ingested: {tmp_path / 'photo.png'}" in shown.stderr
    missing = onnxvec(settings, "ingest", str(tmp_path / "nope"), "--collection", "piped")
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr


def test_one_bad_file_never_sinks_an_ingest(settings: Settings, endpoints: Endpoints, engine, tmp_path: Path) -> None:
    """A FIFO, a dangling link, NUL bytes, a name that is not UTF-8 and hostile records among good
    files: the good ones are registered, each bad one is recorded failed with its reason, nothing hangs
    (a FIFO is never opened for a blocking read). Unreadable files: tests/unit/test_files.py."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("A good document about keys.")
    os.mkfifo(corpus / "pipe.txt")
    (corpus / "gone.md").symlink_to(corpus / "nowhere.md")
    (corpus / "nul.txt").write_bytes(b"text then \x00 a NUL")
    (corpus / os.fsdecode(b"caf\xe9.txt")).write_text("A file whose name is Latin-1.")
    (corpus / "r.jsonl").write_text('{"id": 1, "text": "good record"}\n{"id": 2, "text": "\\ud800"}\n{broken\n')
    done = subprocess.run(
        [sys.executable, "-m", "onnxvec", "ingest", str(corpus / "*"), "--collection", "bad-files"],
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT external_id, state, last_error FROM documents d JOIN collections c ON c.id = d.collection_id"
                " WHERE c.name = 'bad-files'"
            )
        ).all()
    states = {Path(external_id).name: (state, error) for external_id, state, error in rows}
    assert states.pop("good.md")[0] != "failed" and states.pop("r.jsonl#1")[0] != "failed"
    assert states.pop("caf\\xe9.txt")[0] != "failed"
    assert {name: error for name, (state, error) in states.items() if state == "failed"} == {
        "pipe.txt": "not a regular file (a FIFO); skipped",
        "gone.md": "cannot read the file: No such file or directory",
        "nul.txt": "binary file (a NUL byte at offset 10), not text",
        "r.jsonl#2": "record 2 holds an unpaired surrogate (not valid Unicode)",
        "r.jsonl#3": "line 3 is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2"
        " (char 1)",
    }


def test_secrets_are_masked_and_unreachable_services_are_one_line(settings: Settings, endpoints: Endpoints) -> None:
    secret = {
        "DATABASE_URL": "postgresql+psycopg://onnxvec:hunter2@127.0.0.1:1/onnxvec",
        "REDIS_URL": "redis://:hunter3@127.0.0.1:1/0",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "onnxvec", *args]
        return subprocess.run(command, env=cli_env(settings) | secret, capture_output=True, text=True, timeout=120)

    for args in (("services", "status"), ("services", "status", "--json"), ("services", "start")):
        shown = run(*args)
        assert "hunter" not in shown.stdout + shown.stderr and "***" in shown.stdout, shown
    down = run("collections", "list")
    assert down.returncode == 1 and down.stderr.startswith("error: cannot reach the database: ")
    assert down.stderr.count("\n") == 1 and "hunter" not in down.stderr, down.stderr
    long_name = onnxvec(settings, "collections", "create", "c" * 8000)
    assert long_name.returncode == 1 and long_name.stderr.startswith("error: a collection name is 1 to 200")
    assert long_name.stderr.count("\n") == 1, long_name.stderr


def test_bad_settings_and_bad_revisions_are_one_line_errors(settings: Settings, endpoints: Endpoints) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "onnxvec", "models", "list"],
        env=cli_env(settings) | {"ONNXVEC_THREADS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr == "error: ONNXVEC_THREADS: Input should be greater than or equal to 1\n"
    revision = onnxvec(settings, "db", "downgrade", "nonsense")
    assert revision.returncode == 1 and revision.stderr.startswith("error: ") and "Traceback" not in revision.stderr


def test_a_collection_hides_metadata_paths(settings: Settings, engine, embedder: EmbeddingEngine, api) -> None:
    """`collections create --hide-metadata` / `collections hide`: search leaves the paths out (their
    siblings stay), a filter on them is refused (400 naming `filter`, no hint of their values), and
    `hide ""` shows them again."""
    created = onnxvec(settings, "collections", "create", "hidden_meta", "--hide-metadata", "salary,owner.email")
    assert created.returncode == 0, created.stderr
    metadata = {"title": "Payroll", "salary": 91000, "owner": {"email": "a@example.com", "team": "hr"}}
    sentence = "Payroll runs on the last Friday of each month."
    with engine.begin() as conn:
        col = collections.get_collection(conn, "hidden_meta")
        (doc,) = documents.register(conn, col, [SourceDocument("pay", "mem://pay", sentence, metadata)]).queued
        row = chunks.ChunkRow(0, sentence, "h", 12, embedder.embed([sentence]).vectors[0])
        chunks.write_chunks(conn, col, doc, [row])

    def search(**extra: object) -> httpx.Response:
        return httpx.post(api.url + "/v1/search", json={"collection": "hidden_meta", "query": "payroll"} | extra)

    assert search().json()["data"][0]["metadata"] == {"title": "Payroll", "owner": {"team": "hr"}}
    assert search(filter={"title": "Payroll"}).json()["data"][0]["metadata"]["title"] == "Payroll"
    for probe in ({"salary": {"$gt": 90000}}, {"salary": "x"}, {"owner": {"$ne": None}}):
        refused = search(filter=probe)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "filter", refused.text
        assert "hides" in refused.json()["error"]["message"] and "number" not in refused.json()["error"]["message"]
    listed = {c["id"]: c for c in httpx.get(api.url + "/v1/collections").json()["data"]}
    assert listed["hidden_meta"]["hidden_metadata"] == ["owner.email", "salary"]
    assert "hides owner.email,salary" in onnxvec(settings, "collections", "list").stdout
    shown = onnxvec(settings, "collections", "hide", "hidden_meta", "")
    assert shown.returncode == 0 and "no metadata" in shown.stdout
    assert search().json()["data"][0]["metadata"] == metadata
    bad = onnxvec(settings, "collections", "hide", "hidden_meta", "owner..email")
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
