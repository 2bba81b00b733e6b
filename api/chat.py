"""POST /v1/chat/completions as OpenAI defines it, plain or streamed (server-sent events), with
onnxvec's retrieval fields and the citations of the stored documents the answer was given."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from api.auth import reachable
from api.chat_schemas import CHAT_COMPLETION_RESPONSES, ChatCompletion, ChatCompletionRequest, GenerationFields
from api.disconnect import unless_gone
from api.errors import error_body
from api.routes import JSON
from onnxvec.chat.generate import Sampling
from onnxvec.chat.process import RemoteGeneration
from onnxvec.chat.service import ChatRequest, ChatService, Prepared
from onnxvec.errors import InvalidRequest, Overloaded
from onnxvec.storage.filters import metadata_filter

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")


def sampling_of(body: GenerationFields, max_tokens: int | None, **extra: Any) -> Sampling:
    """The sampling fields chat and legacy completions share (fields these models cannot honour are
    refused by the request models themselves: api/chat_schemas.py)."""
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return Sampling(
        max_tokens=max_tokens,
        min_tokens=body.min_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        seed=body.seed,
        stop=tuple(stops),
        repetition_penalty=body.repetition_penalty,
        **extra,
    )


def to_request(body: ChatCompletionRequest, default_collection: str | None, owner: str) -> ChatRequest:
    """The core request: response_format constrains the output with genai's guidance; logprobs come
    from the model's logits."""
    collection = body.collection or default_collection
    if body.filter is not None:
        metadata_filter(body.filter)  # its grammar is checked now, not only if a search runs (schemathesis)
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequest("'top_logprobs' needs 'logprobs': true.", "top_logprobs")
    sampling = sampling_of(
        body,
        body.max_completion_tokens or body.max_tokens,
        json_schema=body.response_format.constraint() if body.response_format else None,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
    )
    return ChatRequest(
        messages=[m.as_plain() for m in body.messages],
        model=body.model,
        sampling=sampling,
        n=body.n,
        collection=collection,
        k=body.k,
        filter=body.filter,
        min_score=body.min_score,
        rerank=body.rerank,
        rerank_model=body.rerank_model,
        mode=body.mode,
        owner=owner,
    )


def event_stream(events: AsyncGenerator[bytes, None]) -> StreamingResponse:
    """Server-sent events ending with `data: [DONE]`. A failure once the stream has begun (the status
    line is gone) is reported in the stream as OpenAI's error body: 429 when the model is busy, else 500."""

    async def guarded() -> AsyncIterator[bytes]:
        try:
            async with contextlib.aclosing(events):  # a client that leaves closes the generation now
                async for event in events:
                    yield event
        except Overloaded as exc:
            yield b"data: " + orjson.dumps(error_body(429, str(exc), code="too_many_requests")) + b"\n\n"
        except Exception:
            log.exception("generation failed mid-stream")
            yield b"data: " + orjson.dumps(error_body(500, "The generation failed; see the server log.")) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(guarded(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def choice_text(
    request: Request, prepared: Prepared, sampling: Sampling, index: int
) -> tuple[str, RemoteGeneration]:
    """Choice `index` generated whole (non-streaming); a client that leaves stops it (499). Counted in
    the metrics either way."""
    chat: ChatService = request.app.state.chat
    generation = chat.start(prepared, sampling, index)

    async def whole() -> str:
        return "".join([delta async for delta in chat.stream(generation, prepared.owner)])

    try:
        return await unless_gone(request, whole()), generation
    finally:  # also when the client left: counted as cancelled
        request.app.state.metrics.on_generation(prepared.engine.name, generation)


async def counted_deltas(
    chat: ChatService, prepared: Prepared, generation: RemoteGeneration, metrics: Any
) -> AsyncIterator[str]:
    """A streamed choice's text deltas (logprobs and the finish reason accumulate on `generation`),
    counted in the metrics however the stream ends. Use it under contextlib.aclosing."""
    try:
        async for delta in chat.stream(generation, prepared.owner):
            yield delta
    finally:  # also when the client went away: counted as cancelled
        metrics.on_generation(prepared.engine.name, generation)


def _usage(prepared: Prepared, completion_tokens: int) -> dict[str, int]:
    prompt = len(prepared.prompt_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def _logprobs(sampling: Sampling, entries: list[dict]) -> dict | None:
    return None if sampling.logprobs is None else {"content": entries, "refusal": None}


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


@router.post("/chat/completions", response_model=ChatCompletion, responses=CHAT_COMPLETION_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    chat: ChatService = request.app.state.chat
    core = to_request(body, chat.settings.chat_collection, request.state.owner)
    if core.collection:
        reachable(request, core.collection)
    prepared = await chat.prepare(core)
    chat.admit(prepared.engine.name, prepared.owner)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": prepared.engine.name}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(chat, prepared, core, head, include_usage, request.app.state.metrics)
        return event_stream(events)
    choices, texts, completion_tokens = [], [], 0
    for index in range(core.n):
        text, generation = await choice_text(request, prepared, core.sampling, index)
        completion_tokens += generation.completion_tokens
        texts.append(text)
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": _logprobs(core.sampling, generation.logprobs),
                "finish_reason": _finish(generation.finish_reason),
            }
        )
    return JSON(
        head
        | {
            "object": "chat.completion",
            "choices": choices,
            "usage": _usage(prepared, completion_tokens),
            "citations": prepared.citations(texts),
            "retrieved": prepared.retrieved(),
            "retrieval_ms": round(prepared.retrieval_ms, 2),
        }
    )


async def _events(
    chat: ChatService, prepared: Prepared, core: ChatRequest, head: dict, include_usage: bool, metrics: Any
) -> AsyncIterator[bytes]:
    """chat.completion.chunk events: per choice the role, content deltas, then its finish_reason;
    citations ride on the last choice's final chunk; usage (if asked) in a chunk of its own."""

    def event(choices: list[dict], **extra: Any) -> bytes:
        return (
            b"data: " + orjson.dumps(head | {"object": "chat.completion.chunk", "choices": choices} | extra) + b"\n\n"
        )

    completion_tokens, texts = 0, []
    for index in range(core.n):
        generation = chat.start(prepared, core.sampling, index)
        texts.append("")
        yield event([{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        sent = 0
        async with contextlib.aclosing(counted_deltas(chat, prepared, generation, metrics)) as deltas:
            async for delta in deltas:
                texts[-1] += delta
                entries = generation.logprobs[sent:]  # appended by the generation thread meanwhile
                sent += len(entries)
                logprobs = _logprobs(core.sampling, entries)
                choice = {"index": index, "delta": {"content": delta}, "logprobs": logprobs, "finish_reason": None}
                yield event([choice])
        completion_tokens += generation.completion_tokens
        last = {}
        if index == core.n - 1:
            last = {
                "citations": prepared.citations(texts),
                "retrieved": prepared.retrieved(),
                "retrieval_ms": round(prepared.retrieval_ms, 2),
            }
        yield event([{"index": index, "delta": {}, "finish_reason": _finish(generation.finish_reason)}], **last)
    if include_usage:
        yield event([], usage=_usage(prepared, completion_tokens))
