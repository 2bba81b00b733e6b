"""Alembic migrations upgrade and downgrade on a scratch database of the embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import psycopg
from sqlalchemy import inspect

from onnxvec.config import PROJECT_ROOT
from onnxvec.infra import db, embedded


def _empty_database(endpoints: embedded.Endpoints, name: str) -> str:
    """A new database with no schema at all; its URL."""
    admin = embedded.libpq_url(endpoints.database_url).replace("/onnxvec?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return endpoints.database_url.replace("/onnxvec?", f"/{name}?")


HEAD = max(p.name.split("_")[0] for p in (PROJECT_ROOT / "migrations" / "versions").glob("0*.py"))


def test_upgrade_downgrade_upgrade(endpoints: embedded.Endpoints) -> None:
    engine = db.make_engine(_empty_database(endpoints, "migrations_probe"))
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == HEAD
        assert {"collections", "documents", "chunks", "api_keys"} <= set(inspect(engine).get_table_names())
        assert {"collections", "read_only"} <= {c["name"] for c in inspect(engine).get_columns("api_keys")}
        assert "hidden_metadata" in {c["name"] for c in inspect(engine).get_columns("collections")}
        assert {"database_url", "poll_column"} <= {c["name"] for c in inspect(engine).get_columns("table_sources")}
        db.upgrade(engine)  # idempotent: start-up runs it every time
        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert not {"collections", "documents", "chunks", "api_keys"} & set(inspect(engine).get_table_names())
        db.upgrade(engine)
        assert db.current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_an_installed_wheel_migrates(tmp_path, endpoints: embedded.Endpoints) -> None:
    """Not only a checkout: the wheel carries the migrations (and the data files), and onnxvec
    imported from it brings a new database to the head revision."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, PROJECT_ROOT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("onnxvec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"migrations/env.py", "migrations/script.py.mako", "onnxvec/models/build/quality_texts.txt"}
    expected |= {f"migrations/versions/{p.name}" for p in (PROJECT_ROOT / "migrations" / "versions").glob("0*.py")}
    assert expected <= names, expected - names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel], check=True)
    script = (
        "import sys, onnxvec, migrations; from onnxvec.infra import db;"
        f"assert onnxvec.__file__.startswith({str(target)!r}), onnxvec.__file__;"
        f"assert migrations.__file__.startswith({str(target)!r}), migrations.__file__;"
        "engine = db.make_engine(sys.argv[1]); db.upgrade(engine); print(db.current_revision(engine))"
    )
    url = _empty_database(endpoints, "wheel_migrates")
    done = subprocess.run(
        [sys.executable, "-c", script, url],
        env=os.environ | {"PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == max(name.rsplit("/", 1)[1].split("_")[0] for name in expected if "/versions/" in name)
