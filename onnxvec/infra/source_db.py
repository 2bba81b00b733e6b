"""The databases table sources live in: onnxvec's own (the default) or another Postgres named by URL
(`sources add --database-url`). One pooled engine per URL per process, so a worker that syncs a remote
table every second does not reconnect every second."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from onnxvec.errors import StoreError
from onnxvec.infra.db import make_engine

CONNECT_SECONDS = 3


def normalized(url: str) -> str:
    """A Postgres URL as onnxvec connects with it (psycopg 3); StoreError for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {shown(url)}") from exc
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(f"a source's database must be Postgres, not {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def shown(url: str) -> str:
    """The URL with its password hidden, for status lines, API bodies and errors."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparsable URL>"
    query = {key: ("***" if "password" in key.lower() else value) for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


@lru_cache(maxsize=32)
def engine_for(url: str) -> Engine:
    """Connecting gives up after CONNECT_SECONDS: a status page lists every source, reachable or not."""
    return make_engine(normalized(url), connect_seconds=CONNECT_SECONDS)
