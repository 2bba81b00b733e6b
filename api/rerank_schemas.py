"""Rerank bodies in the two shapes clients send: Cohere's and Jina's (/v1/rerank) and Hugging Face
TEI's (/rerank). Requests are open (extra="ignore"): those clients send fields of their own (Cohere's
rank_fields, max_chunks_per_doc; TEI's truncation_direction) that change nothing here."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from pydantic.json_schema import SkipJsonSchema

from api.schemas import Positive, Usage, omitted

_REQUEST = ConfigDict(extra="ignore", strict=True)
Query = Annotated[str, Field(min_length=1)]
_TRUNCATE = "cut each document so that its pair with the query fits the model (else 400); the query is kept"


class TextDocument(BaseModel):
    model_config = _REQUEST

    text: StrictStr


class RerankRequest(BaseModel):
    model_config = ConfigDict(
        **_REQUEST,
        json_schema_extra={
            "examples": [{"query": "how do I rotate keys", "documents": ["Revoke the old key.", "Bananas"]}]
        },
    )

    model: str | None = Field(default=None, description="a pulled reranker; ONNXVEC_RERANK_MODEL when omitted")
    query: Query
    documents: list[StrictStr | TextDocument] = Field(min_length=1, description="texts, or objects with a text")
    top_n: Positive | None = Field(default=None, description="return the n most relevant (default: all)")
    return_documents: bool = Field(default=True, description="include each document's text in its result")
    truncate: bool = Field(default=True, description="onnxvec: " + _TRUNCATE)


class TeiRerankRequest(BaseModel):
    model_config = ConfigDict(
        **_REQUEST,
        json_schema_extra={
            "examples": [{"query": "how do I rotate keys", "texts": ["Revoke the old key.", "Bananas"]}]
        },
    )

    query: Query
    texts: list[StrictStr] = Field(min_length=1)
    raw_scores: bool = Field(default=False, description="the model's logits instead of their sigmoid")
    return_text: bool = False
    truncate: bool = Field(default=True, description=_TRUNCATE)
    model: str | None = Field(default=None, description="onnxvec: a pulled reranker; ONNXVEC_RERANK_MODEL when omitted")


class DocumentText(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int = Field(description="the document's position in the request")
    relevance_score: float = Field(description="the sigmoid of the model's logit, in [0, 1]")
    document: DocumentText | SkipJsonSchema[None] = omitted("absent when return_documents is false")


class RerankTokens(BaseModel):
    input_tokens: int
    output_tokens: int


class RerankMeta(BaseModel):
    tokens: RerankTokens


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="most relevant first")
    usage: Usage
    meta: RerankMeta = Field(description="Cohere's name for the tokens read")


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | SkipJsonSchema[None] = omitted("the document, with return_text")
