"""Bodies of /v1/collections and their documents (api/collections.py), beside api/schemas.py's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from api.schemas import int_range
from onnxvec.storage.collections import MAX_CHUNK_TOKENS, MAX_NAME, MIN_CHUNK_TOKENS, Metric

MAX_DOCUMENTS = 1000  # documents one request may post (ONNXVEC_MAX_REQUEST_BYTES bounds their size)
MAX_DOCUMENT_ID = 512  # characters: a unique btree key must stay under 2,704 bytes


class CollectionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"name": "notes", "model": "all-MiniLM-L6-v2", "metric": "cosine"}]},
    )

    name: str = Field(min_length=1, max_length=MAX_NAME)
    model: str | None = Field(default=None, description="a pulled embedding model (default: ONNXVEC_EMBEDDING_MODEL)")
    metric: Metric = "cosine"
    chunk_tokens: int_range(MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS) | None = Field(
        default=None, description="tokens per chunk (default: ONNXVEC_CHUNK_TOKENS, 256)"
    )
    chunk_overlap: int_range(0, MAX_CHUNK_TOKENS - 1) | None = Field(
        default=None, description="tokens consecutive chunks share, below chunk_tokens (default: ONNXVEC_CHUNK_OVERLAP)"
    )
    language: str | None = Field(
        default=None, min_length=1, description="a text search configuration of pg_ts_config (default: english)"
    )


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: StrictStr = Field(min_length=1, max_length=MAX_DOCUMENT_ID, description="yours; posting it again replaces it")
    text: StrictStr = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict, description="a JSON object, filterable in /v1/search")


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"documents": [{"id": "faq-1", "text": "Keys rotate monthly.", "metadata": {"lang": "en"}}]}]
        },
    )

    documents: list[DocumentIn] = Field(
        min_length=1, max_length=MAX_DOCUMENTS, description="an id given twice: the later one wins"
    )


class DocumentStates(BaseModel):
    pending: int
    processing: int
    done: int
    failed: int


class DocumentsAccepted(BaseModel):
    object: Literal["collection.documents"]
    collection: str
    queued: int = Field(description="new or changed documents, handed to the workers")
    unchanged: int = Field(description="same id and content hash as stored: not embedded again")
    failed: int = Field(description="recorded as failed at once (text over ONNXVEC_MAX_DOCUMENT_BYTES)")
    documents: DocumentStates = Field(description="the queued documents by state, when the answer was written")
    complete: bool = Field(description="none of the queued documents is pending or processing any more")


class Document(BaseModel):
    object: Literal["document"]
    id: str
    collection: str
    source: str | None
    state: Literal["pending", "processing", "done", "failed"]
    error: str | None = Field(description="why the last attempt failed")
    attempts: int
    metadata: dict[str, Any]
    chunks: int
    updated_at: int = Field(description="Unix seconds")


class Deleted(BaseModel):
    id: str
    object: Literal["collection.deleted", "document.deleted"]
    deleted: Literal[True]


class VersionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"model": "all-MiniLM-L6-v2-fp32"}]}
    )

    model: str | None = Field(default=None, description="a pulled embedding model (default: the active version's)")
    metric: Metric | None = None
    chunk_tokens: int_range(MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS) | None = None
    chunk_overlap: int_range(0, MAX_CHUNK_TOKENS - 1) | None = None
    activate: bool = Field(default=True, description="switch to the new version once it is built")


class VersionObject(BaseModel):
    object: Literal["collection.version"]
    collection: str
    version: int
    model: str
    dims: int
    metric: Metric
    chunk_tokens: int
    chunk_overlap: int
    state: Literal["building", "paused", "ready"]
    active: bool
    progress: float = Field(description="share of the collection's done documents built, 0 to 1")
    eta_seconds: float | None = Field(description="at the pace so far; null before the first batch or once built")
    documents: int = Field(description="documents built into this version by its build")
    chunks: int
    embedded_chunks: int = Field(description="chunks its build embedded")
    reused_chunks: int = Field(description="chunks its build took from a version with the same model")
    created_at: int = Field(description="Unix seconds")
    built_at: int | None = Field(description="Unix seconds")
    error: str | None = Field(
        description="why the build paused itself (its model missing on a worker); resume to retry"
    )


class VersionList(BaseModel):
    object: Literal["list"]
    data: list[VersionObject]
