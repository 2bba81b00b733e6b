"""Shared fixtures: one embedded PostgreSQL + Redis and the real default model for the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from onnxvec import db, services
from onnxvec.config import Settings
from onnxvec.embed import EmbeddingEngine
from onnxvec.modelstore import ModelStore

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # short: unix socket paths must stay under ~100 bytes
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def settings(home: Path) -> Settings:
    """Embedded services whatever the environment says: tests never touch a configured database."""
    return Settings(home=home, database_url=None, redis_url=None, threads=2)


@pytest.fixture(scope="session")
def endpoints(settings: Settings) -> Iterator[services.Endpoints]:
    yield services.ensure_services(settings)
    services.stop_services(settings)


@pytest.fixture(scope="session")
def engine(endpoints: services.Endpoints) -> Iterator[Engine]:
    sa_engine = db.make_engine(endpoints.database_url)
    db.upgrade(sa_engine)
    yield sa_engine
    sa_engine.dispose()


@pytest.fixture(scope="session")
def model_store(settings: Settings) -> ModelStore:
    store = ModelStore(settings.models_dir)
    store.pull(DEFAULT_MODEL)
    return store


@pytest.fixture(scope="session")
def embedder(settings: Settings, model_store: ModelStore) -> EmbeddingEngine:
    return EmbeddingEngine(model_store.get(DEFAULT_MODEL), model_store, settings)
