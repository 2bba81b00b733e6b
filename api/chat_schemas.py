"""Chat and legacy text completion bodies, as OpenAI names them (plus onnxvec's extension fields).

Requests are strict and closed (extra="forbid"): a field onnxruntime-genai cannot honour is refused
with its name (api/chat.py), and an unknown one is a 400, as at OpenAI: nothing is silently ignored.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from api.schemas import (
    MODE_HELP,
    JsonInt,
    MetadataFilter,
    Positive,
    error_responses,
    event_stream,
    int_range,
    omitted,
)
from onnxvec.config import SearchMode

_REQUEST = ConfigDict(extra="forbid", strict=True)
NonEmpty = Annotated[str, Field(min_length=1)]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # e.g. an echoed assistant message's "refusal"

    role: Literal["system", "developer", "user", "assistant"] = Field(description="no tool role: no tool calling")
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: None = Field(default=None, description="refused: these models have no tool calling")

    def as_plain(self) -> dict[str, str]:
        """The message as the chat template takes it: developer is system, text parts joined."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class StreamOptions(BaseModel):
    model_config = _REQUEST

    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(
        **_REQUEST,
        # stated in the document too, so that clients and schemathesis know it
        json_schema_extra={
            "if": {"properties": {"type": {"const": "json_schema"}}},
            "then": {"properties": {"json_schema": {"type": "object"}}, "required": ["json_schema"]},
        },
    )

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema object")
        return self

    def constraint(self) -> str | None:
        """The JSON schema the output is held to (genai's guidance), or None for plain text."""
        if self.type == "json_object":
            return json.dumps({"type": "object"})
        if self.type == "json_schema" and self.json_schema is not None:
            return json.dumps(self.json_schema.schema_ or {})
        return None


class GenerationFields(BaseModel):
    """What chat and legacy completions share: model, sampling, stops, streaming."""

    model_config = _REQUEST

    model: str | None = None
    min_tokens: int_range(0) | None = Field(default=None, description="onnxvec (as vLLM): no end token before this")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: Positive | None = Field(default=None, description="onnxvec: sample from the k likeliest tokens")
    n: JsonInt = Field(default=1, ge=1, le=8)
    stop: NonEmpty | Annotated[list[NonEmpty], Field(max_length=4)] | None = Field(
        default=None, description="up to 4 strings, cut from the output"
    )
    seed: JsonInt | None = Field(
        default=None, description="same seed, same text; any integer, taken modulo 2^31 (the model's seed is 31-bit)"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(
        default=None, ge=0, le=0, description="0 only: onnxruntime-genai has repetition_penalty instead"
    )
    presence_penalty: float | None = Field(
        default=None, ge=0, le=0, description="0 only: onnxruntime-genai has repetition_penalty instead"
    )
    logit_bias: dict[str, float] | None = Field(default=None, max_length=0, description="empty only: not supported")
    repetition_penalty: float | None = Field(default=None, gt=0, le=10, description="onnxvec: genai's penalty")
    user: str | None = None


class ChatCompletionRequest(GenerationFields):
    model_config = ConfigDict(
        **_REQUEST,
        # top_logprobs needs logprobs: true (as at OpenAI); stated here so that clients and schemathesis know
        json_schema_extra={
            "if": {"properties": {"top_logprobs": {"type": "integer"}}, "required": ["top_logprobs"]},
            "then": {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]},
        },
    )

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    response_format: ResponseFormat | None = Field(default=None, description="json_object / json_schema: enforced")
    logprobs: bool = False
    top_logprobs: int_range(0, 20) | None = None
    tools: list[dict[str, Any]] | None = Field(
        default=None, max_length=0, description="empty only: these models have no tool calling"
    )
    tool_choice: Literal["none"] | None = Field(default=None, description="none only: no tool calling")
    parallel_tool_calls: bool | None = None
    collection: str | None = Field(default=None, description="onnxvec: answer from this collection (RAG)")
    k: JsonInt = Field(default=4, ge=1, le=50, description="onnxvec: chunks to retrieve")
    filter: MetadataFilter | None = Field(default=None, description="onnxvec: metadata filter for retrieval")
    min_score: float | None = Field(default=None, description="onnxvec: drop retrieved chunks scoring lower")
    rerank: bool = Field(default=False, description="onnxvec: retrieve more candidates and keep a reranker's best k")
    rerank_model: str | None = Field(default=None, description="onnxvec: the reranker (implies rerank)")
    min_score: float | None = Field(
        default=None, description="onnxvec: drop retrieved chunks scoring lower (the score of the search mode)"
    )
    mode: SearchMode | None = Field(default=None, description="onnxvec: retrieval mode; " + MODE_HELP)


class CompletionRequest(GenerationFields):
    prompt: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1)]
    max_tokens: Positive | None = Field(default=None, description="default 16, as at OpenAI")
    echo: bool = False
    suffix: None = Field(default=None, description="not supported")
    logprobs: None = Field(default=None, description="not supported on this endpoint (chat has logprobs)")
    best_of: Literal[1] | None = Field(default=None, description="1 only")


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    refusal: None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]
    refusal: None


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None = Field(description="with logprobs: true")
    finish_reason: Literal["stop", "length"]


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Citation(BaseModel):
    index: int = Field(description="the source's number in the prompt ([1], [2], ...)")
    document_id: int
    external_id: str
    source: str | None
    chunk: int
    score: float


class UsedCitation(Citation):
    evidence: Literal["marker", "overlap"] = Field(
        description="how the answer uses it: its [n] marker, or a run of 5 words quoted from it"
    )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: ChatUsage
    citations: list[UsedCitation] = Field(description="onnxvec: the sources the answer uses (of `retrieved`)")
    retrieved: list[Citation] = Field(description="onnxvec: every retrieved source the prompt numbered")
    retrieval_ms: float = Field(description="onnxvec: time spent retrieving the sources")


class ChatCompletionDelta(BaseModel):
    role: Literal["assistant"] | SkipJsonSchema[None] = omitted("in a choice's first chunk")
    content: str | SkipJsonSchema[None] = omitted("the next piece of text; absent in the finishing chunk")


class ChatCompletionChunkChoice(BaseModel):
    index: int
    delta: ChatCompletionDelta
    logprobs: ChoiceLogprobs | None = omitted("on content chunks: the delta's tokens, with logprobs: true")
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed completion."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
    usage: ChatUsage | SkipJsonSchema[None] = omitted("in a last chunk of its own (no choices), if asked")
    citations: list[UsedCitation] | SkipJsonSchema[None] = omitted("onnxvec: on the last choice's finishing chunk")
    retrieved: list[Citation] | SkipJsonSchema[None] = omitted("onnxvec: beside citations")
    retrieval_ms: float | SkipJsonSchema[None] = omitted("onnxvec: beside citations")


CHAT_STREAM = (
    "With `stream: true` the answer is `text/event-stream`: one `data: {ChatCompletionChunk}` event per "
    "delta (per choice: the role, content deltas, then its finish_reason; citations ride on the last "
    "choice's final chunk, usage on a chunk of its own when stream_options.include_usage), ending with "
    "`data: [DONE]`. An error after the stream started arrives as `data: {ErrorResponse}` before [DONE]."
)
CHAT_COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The completion, or its stream of chunks (see text/event-stream)",
        "content": event_stream("ChatCompletionChunk", CHAT_STREAM),
    },
    **error_responses(400, 404, 413, 503),  # api/app.py adds 401, 429 (and 503) to every /v1 route
}


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    """POST /v1/completions; with stream: true, one `data:` event of this shape per delta (object
    text_completion, finish_reason null until a choice ends), then `data: [DONE]`."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: ChatUsage | SkipJsonSchema[None] = omitted("absent from streamed chunks unless asked for")


COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The completion, or its stream of text_completion chunks ending with data: [DONE]",
        "content": event_stream("Completion", "text_completion chunks, each a Completion, then `data: [DONE]`"),
    },
    **error_responses(400, 404, 413, 503),
}
