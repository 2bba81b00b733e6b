"""Database connections and schema migrations (Alembic; the scripts are the installed `migrations` package,
so a wheel or the Docker image migrates as a checkout does)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine

import migrations


def make_engine(url: str, connect_seconds: int = 10) -> Engine:
    """A pooled SQLAlchemy engine on psycopg 3; pre-ping so a restarted Postgres is reconnected, and a
    bounded connect so an unreachable one fails in seconds rather than hanging its caller."""
    return create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": connect_seconds}
    )


def _alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; run on every start-up, a no-op when already there."""
    _alembic(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Step the schema back to `revision` ("base" drops every table onnxvec made)."""
    _alembic(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
