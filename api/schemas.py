"""Request and response bodies, as OpenAI names them (plus onnxvec's extension fields), in one place.

The response models document what the routes write (they build their JSON themselves, with orjson,
so that embeddings stay numpy arrays): a field changed on one side must be changed on the other.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictStr
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from onnxvec.config import SearchMode
from onnxvec.models.manifest import Pooling
from onnxvec.storage.chunks import MAX_K
from onnxvec.storage.collections import Metric


def _integral(value: Any) -> Any:
    """JSON Schema's integer: 3.0 is one (strict pydantic refuses it), "3" and true are not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, Strict(), BeforeValidator(_integral)]


def int_range(ge: int, le: int | None = None) -> Any:
    """A JSON integer in [ge, le]. The bounds go before the validators, or pydantic documents an
    optional field's bound as "ge" (which JSON Schema does not know), not "minimum"."""
    return Annotated[int, Field(ge=ge, le=le), Strict(), BeforeValidator(_integral)]


Positive = int_range(1)
UpToMaxK = int_range(1, MAX_K)

MODE_HELP = "vector, text (Postgres full text) or hybrid (both, fused by rank); default: ONNXVEC_SEARCH_MODE"

# Documented here, enforced where the errors name their parameter as OpenAI does: onnxvec.embedding.service
# (empty inputs, negative token ids: 400 with param "input") and onnxvec.storage.filters (filters: 400).
_TEXT = {"type": "string", "minLength": 1}
_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
EmbeddingInput = Annotated[
    StrictStr | list[StrictStr] | list[JsonInt] | list[list[JsonInt]],
    WithJsonSchema(
        {
            "anyOf": [
                _TEXT,
                {"type": "array", "items": _TEXT, "minItems": 1},
                _IDS,
                {"type": "array", "items": _IDS, "minItems": 1},
            ],
            "description": "a string, an array of strings, an array of token ids, or an array of token-id arrays; "
            "token ids are OpenAI's cl100k_base (ONNXVEC_TOKEN_IDS=model: the model's own vocabulary)",
        }
    ),
]
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
_OPERATORS = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        **{op: {"type": "array", "items": _SCALAR, "minItems": 1} for op in ("$in", "$nin")},
        **{op: _SCALAR for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")},
    },
}
MetadataFilter = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {"anyOf": [_SCALAR, _OPERATORS]},
            "description": "metadata conditions, all must hold: "
            '{"lang": "en", "year": {"$gte": 2020}, "tag": {"$in": [...]}}',
        }
    ),
]


class EmbeddingRequest(BaseModel):
    # strict: what the document says is a boolean or an integer must be one (no "1", 0 or 1.0 for them)
    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={"examples": [{"input": ["The food was delicious.", "A fast drive"]}]},
    )

    input: EmbeddingInput
    model: str | None = Field(default=None, description="a pulled embedding model; the default when omitted")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Positive | None = Field(
        default=None, description="keep the first n dimensions, renormalized; at most the model's dims"
    )
    user: str | None = None
    truncate: bool = Field(default=True, description="onnxvec: cut inputs over the model's maximum (else 400)")


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"collection": "docs", "query": "how do I rotate keys", "k": 3}]},
    )

    collection: str = Field(min_length=1)
    query: str = Field(min_length=1)
    k: UpToMaxK = 10
    filter: MetadataFilter | None = None
    include_text: bool = True
    ef_search: UpToMaxK | None = Field(
        default=None, description="HNSW candidate list (default: ONNXVEC_EF_SEARCH, 100)"
    )
    rerank: bool = Field(default=False, description="re-score the top candidates with a reranker, keep the best k")
    rerank_model: str | None = Field(default=None, description="the reranker (implies rerank; ONNXVEC_RERANK_MODEL)")
    mode: SearchMode | None = Field(default=None, description=MODE_HELP)
    vector_weight: float | None = Field(
        default=None, ge=0, description="hybrid: weight of the vector ranks (default: ONNXVEC_VECTOR_WEIGHT, 1)"
    )
    text_weight: float | None = Field(
        default=None, ge=0, description="hybrid: weight of the full-text ranks (default: ONNXVEC_TEXT_WEIGHT, 1)"
    )
    rrf_k: Positive | None = Field(
        default=None, description="hybrid: rank r of a leg adds weight/(rrf_k + r) (default: ONNXVEC_RRF_K, 60)"
    )


# Responses


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omitted(description: str) -> Any:
    """A key the route leaves out of the body rather than writing null: optional, with no default shown."""
    return Field(default=None, description=description, json_schema_extra=_drop_default)


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error, service_unavailable, server_error, ...")
    param: str | None = Field(description="the request field at fault, when there is one")
    code: str | None = Field(description="e.g. invalid_value, model_not_found, invalid_api_key")


class ErrorResponse(BaseModel):
    """OpenAI's error body: the only shape an error leaves the API in."""

    error: ErrorDetail


_ERRORS = {
    400: "Invalid request: a malformed body, a value out of range, or one the model cannot take.",
    401: "Missing or invalid API key (required once any key was created, or with ONNXVEC_AUTH=required).",
    408: "The request body did not arrive within ONNXVEC_BODY_TIMEOUT_SECONDS.",
    403: "The key may not read this (a key limited to collections, on /metrics).",
    404: "Unknown model or collection.",
    413: "The request body is over ONNXVEC_MAX_REQUEST_BYTES.",
    429: "Too many requests in flight or inputs queued; retry after Retry-After seconds.",
    500: "Unexpected server error (the traceback is in the server log).",
    503: "A backing service (PostgreSQL, Redis) or the model is unavailable.",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "required": True, "schema": {"type": "string"}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can fail with these codes (500 always can), all in OpenAI's body."""
    return {
        code: {"model": ErrorResponse, "description": _ERRORS[code]}
        | ({"headers": _RETRY_AFTER} if code == 429 else {})
        for code in sorted({*codes, 500})
    }


def event_stream(chunk: str, description: str) -> dict[str, Any]:
    """A `text/event-stream` media type whose events carry `data:` the chunk model as JSON, an
    ErrorResponse when a generation fails mid-stream, or the closing `[DONE]` (OpenAPI 3.1: the
    schema describes one event)."""
    body = {"anyOf": [{"$ref": f"#/components/schemas/{chunk}"}, {"$ref": "#/components/schemas/ErrorResponse"}]}
    data = {
        "anyOf": [
            {"const": "[DONE]"},
            {"type": "string", "contentMediaType": "application/json", "contentSchema": body},
        ]
    }
    return {
        "text/event-stream": {
            "schema": {"type": "object", "required": ["data"], "properties": {"data": data}, "description": description}
        }
    }


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32 (encoding_format)")
    tokens: int = Field(description="onnxvec: tokens of this input the model read")
    truncated: bool = Field(description="onnxvec: whether the input was cut at the model's maximum")


class EmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


EMBEDDING_HEADERS = {
    "X-Truncated-Inputs": {
        "description": "inputs cut at the model's maximum",
        "required": True,
        "schema": {"type": "string"},
    },
    "Server-Timing": {
        "description": "queue, tokenize and inference milliseconds",
        "required": True,
        "schema": {"type": "string"},
    },
}


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    kind: Literal["embedding", "chat", "reranker"]
    dims: int | None = Field(description="embedding dimensions")
    max_seq_length: int | None = Field(description="tokens an embedding input (or a reranker's pair) is cut at")
    pooling: Pooling | None
    normalize: bool
    distance_metrics: list[str]
    context_length: int | None = Field(description="a chat model's context window, in tokens")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class SearchHit(BaseModel):
    object: Literal["search.result"]
    rank: int
    score: float = Field(
        description="higher is better; vector: cosine similarity, inner product or negated L2 distance; "
        "text: ts_rank_cd; hybrid: the reciprocal rank fusion score"
    )
    distance: float | None = Field(description="the vector distance; null when the vector leg did not find it")
    document_id: int
    external_id: str
    source: str | None
    chunk: int = Field(description="ordinal of the chunk in its document")
    title: str | None = Field(description="the document's title (an HTML page's <title>, or its metadata's title)")
    section: str | None = Field(
        description="the headings the chunk starts under, outermost first, joined by ' › '; null before any heading"
    )
    metadata: dict[str, Any]
    text: str | SkipJsonSchema[None] = omitted("the chunk's text; absent when include_text is false")
    rerank_score: float | SkipJsonSchema[None] = omitted("the reranker's relevance in [0, 1], with rerank")


class SearchResponse(BaseModel):
    object: Literal["list"]
    collection: str
    model: str
    metric: Metric
    version: int = Field(description="the collection's embedding version that answered (model and metric are its)")
    mode: SearchMode
    data: list[SearchHit]
    usage: Usage


class Collection(BaseModel):
    object: Literal["collection"]
    id: str
    model: str
    dims: int
    metric: Metric
    chunk_tokens: int
    chunk_overlap: int
    hidden_metadata: list[str] = Field(description="dotted metadata paths search leaves out and filters refuse")
    language: str = Field(description="the text search configuration its chunks and text queries are stemmed with")
    documents: dict[str, int] = Field(description="documents by state (pending, done, failed, ...)")
    chunks: int
    version: int = Field(description="the active embedding version: model, dims, metric and chunking are its")


class CollectionList(BaseModel):
    object: Literal["list"]
    data: list[Collection]


class Source(BaseModel):
    object: Literal["source"]
    id: str = Field(description="the source's name; its documents' ids are NAME:KEY")
    table: str = Field(description="schema.table")
    database: str | None = Field(description="the other Postgres the table is in (password hidden); null: onnxvec's")
    collection: str
    key: list[str] = Field(description="the key columns")
    mode: Literal["triggers", "poll"] = Field(description="triggers queue each change; poll reads a changed-at column")
    poll_column: str | None = Field(description="the changed-at column polled (null with triggers)")
    queued: int | None = Field(description="changed rows waiting to be applied (null: the database is unreachable)")
    lag_seconds: float | None = Field(description="age of the oldest change waiting (0 when none)")
    error: str | SkipJsonSchema[None] = omitted("why queued and lag are null")
    rows_per_second: float = Field(description="rows embedded (or brought up to date) per second, last minute")
    documents: dict[str, int] = Field(description="the source's documents by state")


class SourceList(BaseModel):
    object: Literal["list"]
    data: list[Source]


class Health(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    database: bool
    redis: bool
    model: bool = Field(description="the default embedding model is loaded")


class Ready(BaseModel):
    status: Literal["ready"]
    checks: ReadyChecks


class NotReady(ErrorResponse):
    checks: ReadyChecks | SkipJsonSchema[None] = omitted("absent when the key lookup could not reach the database")
