"""Request bodies, as OpenAI names them (plus onnxvec's extension fields), in one place."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from onnxvec.store import MAX_K


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(
        description="a string, an array of strings, an array of token ids, or an array of token-id arrays"
    )
    model: str | None = Field(default=None, description="a pulled embedding model; the default when omitted")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, description="keep the first n dimensions, renormalized")
    user: str | None = None
    truncate: bool = Field(default=True, description="onnxvec: cut inputs over the model's maximum (else 400)")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str = Field(min_length=1)
    query: str = Field(min_length=1)
    k: int = Field(default=10, ge=1, le=MAX_K)
    filter: dict[str, Any] | None = Field(
        default=None,
        description='metadata conditions, all must hold: {"lang": "en", "year": {"$gte": 2020}, "tag": {"$in": [...]}}',
    )
    include_text: bool = True
    ef_search: int | None = Field(default=None, ge=1, le=MAX_K, description="HNSW candidate list (default 100)")
