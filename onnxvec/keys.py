"""API keys: created and revoked in Postgres (SHA-256 digests only), or given in ONNXVEC_API_KEYS.

Authentication is on as soon as any key exists, from either place. The server keeps the set of
valid digests for a few seconds, so a revoked key stops working within `KeyRing.ttl` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

PREFIX = "ovk-"


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(conn: Connection, name: str) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and only its digest is stored."""
    key = PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        text(
            "INSERT INTO api_keys (name, prefix, digest) VALUES (:name, :prefix, :digest)"
            " RETURNING id, name, prefix, created_at, revoked_at"
        ),
        {"name": name, "prefix": key[:10], "digest": digest(key)},
    ).one()
    return ApiKey(*row), key


def list_keys(conn: Connection) -> list[ApiKey]:
    rows = conn.execute(text("SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY id"))
    return [ApiKey(*row) for row in rows]


def revoke(conn: Connection, key_id: int) -> bool:
    """True if a live key was revoked."""
    result = conn.execute(
        text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"), {"id": key_id}
    )
    return result.rowcount > 0


def active_digests(conn: Connection) -> set[str]:
    return set(conn.execute(text("SELECT digest FROM api_keys WHERE revoked_at IS NULL")).scalars())


class KeyRing:
    """The valid key digests: the environment's plus the database's, refreshed every `ttl` seconds."""

    def __init__(self, db: Engine, env_keys: list[str], ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._env = {digest(k) for k in env_keys}
        self._digests: set[str] = set()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> set[str]:
        """Blocking (a database read when stale): call it off the event loop."""
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl:
                with self.db.connect() as conn:
                    self._digests = active_digests(conn)
                self._loaded_at = time.monotonic()
            return self._env | self._digests

    def fresh(self) -> bool:
        return time.monotonic() - self._loaded_at <= self.ttl

    def accepts(self, key: str | None, valid: set[str]) -> bool:
        """Constant-time comparison against every valid digest."""
        if key is None:
            return False
        wanted = digest(key)
        return any(hmac.compare_digest(wanted, d) for d in valid)
