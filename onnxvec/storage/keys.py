"""API keys: created and revoked in Postgres (SHA-256 digests only), or given in ONNXVEC_API_KEYS.

Authentication fails closed: once a key was created it stays on (revoking every key leaves the API
closed to all) until ONNXVEC_AUTH=off. The server keeps the valid digests for a few seconds, so a
revoked key stops working within `KeyRing.ttl` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

PREFIX = "ovk-"


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    collections: list[str] | None  # None: every collection
    read_only: bool


@dataclass(frozen=True)
class Grant:
    """What a request's key may reach: these collections, or every one (None); and whether it may
    only read (api/auth.py: the routes that read, and no other)."""

    collections: frozenset[str] | None = None
    read_only: bool = False

    def allows(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


EVERYTHING = Grant()
_COLUMNS = "id, name, prefix, created_at, revoked_at, collections, read_only"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(
    conn: Connection, name: str, collections: list[str] | None = None, read_only: bool = False
) -> tuple[ApiKey, str]:
    """A new key (limited to `collections` when given, to reading when `read_only`); the plaintext is
    returned once and only its digest is stored."""
    key = PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        text(
            "INSERT INTO api_keys (name, prefix, digest, collections, read_only)"
            f" VALUES (:name, :prefix, :digest, :collections, :read_only) RETURNING {_COLUMNS}"
        ),
        {"name": name, "prefix": key[:10], "digest": digest(key), "collections": collections, "read_only": read_only},
    ).one()
    return ApiKey(*row), key


def list_keys(conn: Connection) -> list[ApiKey]:
    rows = conn.execute(text(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id"))
    return [ApiKey(*row) for row in rows]


def revoke(conn: Connection, key_id: int) -> bool:
    """True if a live key was revoked."""
    result = conn.execute(
        text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"), {"id": key_id}
    )
    return result.rowcount > 0


def active_digests(conn: Connection) -> dict[str, Grant]:
    """Every live key's digest with what it may reach."""
    rows = conn.execute(text("SELECT digest, collections, read_only FROM api_keys WHERE revoked_at IS NULL"))
    return {key: Grant(None if names is None else frozenset(names), read_only) for key, names, read_only in rows}


def any_created(conn: Connection) -> bool:
    """Whether a key was ever created here: revoked keys count, so revoking the last one keeps the API closed."""
    return bool(conn.execute(text("SELECT EXISTS (SELECT FROM api_keys)")).scalar())


@dataclass(frozen=True)
class KeyState:
    required: bool
    grants: dict[str, Grant]  # by key digest


class KeyRing:
    """Who may call the API: the environment's keys plus the database's, re-read every `ttl` seconds.

    Mode (ONNXVEC_AUTH): `required` always asks for a key (none valid: everyone gets 401); `off` never
    does; `auto` asks for one once a key was ever created (ONNXVEC_API_KEYS, or `onnxvec keys create`,
    revoked or not). When the database cannot be read, the last state read stays in force, so keys
    keep working while Postgres restarts; before any read succeeded, the error passes (a 503).
    """

    def __init__(self, db: Engine, env_keys: list[str], mode: str = "auto", ttl: float = 5.0) -> None:
        self.db = db
        self.mode = mode
        self.ttl = ttl
        self._env = {digest(k): EVERYTHING for k in env_keys}
        self._state: KeyState | None = KeyState(False, self._env) if mode == "off" else None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> KeyState:
        """The keys in force. Fresh, or while another thread re-reads them: at once, without waiting
        (callable on the event loop when `fresh()`). Stale: a database read (call it off the loop);
        one reader at a time, one attempt per `ttl` even when the database is down."""
        state = self._state
        if state is not None and self.fresh():
            return state
        if not self._lock.acquire(blocking=state is None):
            return state  # another thread is reading: the last state serves meanwhile
        try:
            if self._state is None or not self.fresh():
                self._read_at = time.monotonic()
                try:
                    with self.db.connect() as conn:
                        live, ever = active_digests(conn), any_created(conn)
                except Exception:
                    if self._state is None:
                        raise
                    log.warning("API keys: the database cannot be read; the last keys read stay in force")
                else:
                    required = self.mode == "required" or bool(self._env) or ever
                    self._state = KeyState(required, live | self._env)
            assert self._state is not None
            return self._state
        finally:
            self._lock.release()

    def fresh(self) -> bool:
        return self.mode == "off" or (self._state is not None and time.monotonic() - self._read_at <= self.ttl)

    def grant(self, key: str, state: KeyState) -> Grant | None:
        """What the key may reach, or None for no valid key (constant-time against every digest)."""
        wanted = digest(key)
        found = [grant for known, grant in state.grants.items() if hmac.compare_digest(wanted, known)]
        return found[0] if found else None
