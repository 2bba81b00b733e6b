"""Alembic migrations upgrade and downgrade on a scratch database of the embedded server."""

from __future__ import annotations

import psycopg
from sqlalchemy import inspect

from onnxvec.infra import db, embedded


def test_upgrade_downgrade_upgrade(endpoints: embedded.Endpoints) -> None:
    admin = embedded.libpq_url(endpoints.database_url).replace("/onnxvec?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS migrations_probe")
        conn.execute("CREATE DATABASE migrations_probe")
    engine = db.make_engine(endpoints.database_url.replace("/onnxvec?", "/migrations_probe?"))
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == "0006"
        assert {"collections", "documents", "chunks", "api_keys"} <= set(inspect(engine).get_table_names())
        assert {"collections", "read_only"} <= {c["name"] for c in inspect(engine).get_columns("api_keys")}
        assert "hidden_metadata" in {c["name"] for c in inspect(engine).get_columns("collections")}
        db.upgrade(engine)  # idempotent: start-up runs it every time
        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert not {"collections", "documents", "chunks", "api_keys"} & set(inspect(engine).get_table_names())
        db.upgrade(engine)
        assert db.current_revision(engine) == "0006"
    finally:
        engine.dispose()
