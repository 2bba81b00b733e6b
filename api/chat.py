"""POST /v1/chat/completions as OpenAI defines it, plain or streamed (server-sent events), with
onnxvec's retrieval fields and the citations of the stored documents the answer was given."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.errors import error_body
from api.routes import JSON
from api.schemas import ChatCompletionRequest
from onnxvec.chat import ChatRequest, ChatService, Prepared
from onnxvec.generate import Sampling
from onnxvec.microbatch import Overloaded
from onnxvec.service import InvalidRequest

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")


def to_request(body: ChatCompletionRequest, default_collection: str | None) -> ChatRequest:
    """The core request; parameters onnxruntime-genai cannot honour are refused, not ignored."""
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(body, name):
            raise InvalidRequest(f"'{name}' is not supported by onnxruntime-genai; use 'repetition_penalty'.", name)
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise InvalidRequest("'stop' takes up to 4 non-empty strings.", "stop")
    sampling = Sampling(
        max_tokens=body.max_completion_tokens or body.max_tokens,
        min_tokens=body.min_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        seed=body.seed,
        stop=tuple(stops),
        repetition_penalty=body.repetition_penalty,
    )
    return ChatRequest(
        messages=[m.as_plain() for m in body.messages],
        model=body.model,
        sampling=sampling,
        n=body.n,
        collection=body.collection or default_collection,
        k=body.k,
        filter=body.filter,
        min_score=body.min_score,
    )


def _usage(prepared: Prepared, completion_tokens: int) -> dict[str, int]:
    prompt = len(prepared.prompt_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSON | StreamingResponse:
    chat: ChatService = request.app.state.chat
    core = to_request(body, chat.settings.chat_collection)
    prepared = await chat.prepare(core)
    chat.admit(prepared.engine.name)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": prepared.engine.name}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(chat, prepared, core, head, include_usage, request.app.state.metrics)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    choices, completion_tokens = [], 0
    for index in range(core.n):
        generation = chat.start(prepared, core.sampling, index)
        text = "".join([delta async for delta in chat.stream(generation)])
        completion_tokens += generation.completion_tokens
        request.app.state.metrics.on_generation(prepared.engine.name, generation)
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": _finish(generation.finish_reason),
            }
        )
    return JSON(
        head
        | {
            "object": "chat.completion",
            "choices": choices,
            "usage": _usage(prepared, completion_tokens),
            "citations": prepared.citations(),
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

    completion_tokens = 0
    try:
        for index in range(core.n):
            generation = chat.start(prepared, core.sampling, index)
            yield event([{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            try:
                async for delta in chat.stream(generation):
                    yield event([{"index": index, "delta": {"content": delta}, "finish_reason": None}])
            finally:  # also when the client went away: counted as cancelled
                metrics.on_generation(prepared.engine.name, generation)
            completion_tokens += generation.completion_tokens
            last = {"citations": prepared.citations(), "retrieval_ms": round(prepared.retrieval_ms, 2)}
            last = last if index == core.n - 1 else {}
            yield event([{"index": index, "delta": {}, "finish_reason": _finish(generation.finish_reason)}], **last)
        if include_usage:
            yield event([], usage=_usage(prepared, completion_tokens))
    except Overloaded as exc:  # the status line is gone: report it in the stream, as OpenAI does
        yield b"data: " + orjson.dumps(error_body(429, str(exc), code="too_many_requests")) + b"\n\n"
    except Exception:
        log.exception("generation failed mid-stream")
        yield b"data: " + orjson.dumps(error_body(500, "The generation failed; see the server log.")) + b"\n\n"
    yield b"data: [DONE]\n\n"
