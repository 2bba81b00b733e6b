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


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def as_plain(self) -> dict[str, str]:
        """The message as the chat template takes it: developer is system, text parts joined."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    min_tokens: int | None = Field(default=None, ge=0, description="onnxvec (as vLLM): no end token before this")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1, description="onnxvec: sample from the k likeliest tokens")
    n: int = Field(default=1, ge=1, le=8)
    stop: str | list[str] | None = Field(default=None)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10, description="onnxvec: genai's penalty")
    user: str | None = None
    collection: str | None = Field(default=None, description="onnxvec: answer from this collection (RAG)")
    k: int = Field(default=4, ge=1, le=50, description="onnxvec: chunks to retrieve")
    filter: dict[str, Any] | None = Field(default=None, description="onnxvec: metadata filter for retrieval")
    min_score: float | None = Field(default=None, description="onnxvec: drop retrieved chunks scoring lower")
