"""Embedded PostgreSQL and Redis: idempotent start, data kept across restarts, URLs respected."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
import redis

from onnxvec.config import Settings
from onnxvec.errors import ServiceError
from onnxvec.infra import embedded


def test_pgvector_and_postgres_versions(endpoints: embedded.Endpoints) -> None:
    with psycopg.connect(embedded.libpq_url(endpoints.database_url)) as conn:
        assert conn.info.server_version >= 180000
        (version,) = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (0, 8)


def test_starting_twice_finds_the_running_servers(settings: Settings, endpoints: embedded.Endpoints) -> None:
    before = {s.name: s.pid for s in embedded.services_status(settings)}
    assert embedded.ensure_services(settings) == endpoints
    after = {s.name: s.pid for s in embedded.services_status(settings)}
    assert before == after and all(after.values())


def test_services_listen_on_unix_sockets_only(endpoints: embedded.Endpoints) -> None:
    assert "host=/" in endpoints.database_url
    assert endpoints.redis_url.startswith("unix:///")
    with psycopg.connect(embedded.libpq_url(endpoints.database_url)) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)


def test_data_survives_a_restart(settings: Settings, endpoints: embedded.Endpoints) -> None:
    with psycopg.connect(embedded.libpq_url(endpoints.database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS restart_probe (v text)")
        conn.execute("INSERT INTO restart_probe VALUES ('kept')")
    redis.Redis.from_url(endpoints.redis_url).set("restart_probe", "kept")
    old_pids = {s.name: s.pid for s in embedded.services_status(settings)}

    assert sorted(embedded.stop_services(settings)) == ["postgres", "redis"]
    assert not any(s.running for s in embedded.services_status(settings))
    assert embedded.stop_services(settings) == []

    assert embedded.ensure_services(settings) == endpoints
    new_pids = {s.name: s.pid for s in embedded.services_status(settings)}
    assert new_pids != old_pids
    with psycopg.connect(embedded.libpq_url(endpoints.database_url)) as conn:
        assert conn.execute("SELECT v FROM restart_probe").fetchall() == [("kept",)]
    assert redis.Redis.from_url(endpoints.redis_url).get("restart_probe") == b"kept"


def test_configured_urls_start_nothing(tmp_path: Path, endpoints: embedded.Endpoints) -> None:
    other = Settings(home=tmp_path, database_url=endpoints.database_url, redis_url=endpoints.redis_url)
    assert embedded.ensure_services(other) == endpoints
    assert not other.services_dir.exists()
    status = embedded.services_status(other)
    assert [(s.embedded, s.running) for s in status] == [(False, True), (False, True)]
    assert embedded.stop_services(other) == []


def test_a_stale_pid_file_naming_another_process_is_not_a_server(settings: Settings, tmp_path: Path) -> None:
    """After a crash the pid may be reused: `stop` must not kill whatever runs under it now."""
    other = Settings(home=tmp_path / "stale")
    (other.services_dir / "redis").mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (other.services_dir / "redis" / "redis.pid").write_text(str(bystander.pid))
        assert embedded.redis_status(other).running is False
        assert embedded.stop_services(other) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()


def test_a_home_too_long_for_a_socket_is_a_clear_error(tmp_path: Path) -> None:
    deep = Settings(home=tmp_path / ("x" * 90))
    with pytest.raises(ServiceError, match="too long for a unix socket"):
        embedded.start_redis(deep)


def test_a_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(home="rel").home == tmp_path / "rel"
