"""What the tests (and bench/) start and call as a user would: the `onnxvec` command, a real worker
process, a real uvicorn server; and a small collection written straight into the store."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.sources.files import SourceDocument
from onnxvec.storage import chunks, collections, documents


def cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {"ONNXVEC_HOME": str(settings.home)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def onnxvec(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxvec", *args],
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


# small messages, so that work spreads over the workers; leases and the reconciler keep their defaults,
# whose recovery times the fault tests measure
WORKER_ENV = {"ONNXVEC_TASK_DOCUMENTS": "8"}


class WorkerProcess:
    """A real `onnxvec worker` (Celery prefork pool + beat) in its own process group."""

    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        environ |= {"ONNXVEC_HOME": str(settings.home), **WORKER_ENV, **env}
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "onnxvec", "worker", "--loglevel", "info"],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            assert self.proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group (main process, pool children, beat); SIGKILL is a crash."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=60)


class ApiServer:
    """A real uvicorn server on a free port, in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from api.app import create_app
        from api.server import server_config

        self.app = create_app(settings)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(server_config(self.app, settings, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    """`onnxvec serve` in a process of its own on `port`, returned once /ready answers 200; a server
    that never becomes ready is stopped (it must not outlive the run) and its log tail raised. A port
    something else answers on is refused: that server's /ready would be taken for this one's."""
    with contextlib.suppress(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/ready")
        raise RuntimeError(f"port {port} is in use by another server; choose another (--port)")
    env = os.environ | {"ONNXVEC_HOME": str(settings.home), "ONNXVEC_API_PORT": str(port)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "onnxvec", "serve"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            proc.wait(timeout=30)
            raise RuntimeError(f"the server did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def small_collection(
    engine: Engine, embedder: EmbeddingEngine, name: str, docs: list[tuple[str, dict]]
) -> collections.Collection:
    """A cosine collection of one-chunk documents doc-<i> (source mem://<i>) with these texts and
    metadata, written as the worker writes them (vectors and tsvectors)."""
    vectors = embedder.embed([text for text, _ in docs]).vectors
    with engine.begin() as conn:
        col = collections.create_collection(conn, name, embedder.manifest.name, embedder.dims, "cosine")
        sources = [SourceDocument(f"doc-{i}", f"mem://{i}", text, meta) for i, (text, meta) in enumerate(docs)]
        registered = documents.register(conn, col, sources).queued
        for doc_id, (text, _), vector in zip(registered, docs, vectors, strict=True):
            row = chunks.ChunkRow(0, text, hashlib.sha256(text.encode()).hexdigest(), 8, vector)
            chunks.write_chunks(conn, col, doc_id, [row])
    return col
