"""POST /v1/completions: OpenAI's legacy text completion (what LlamaIndex's OpenAILike calls by
default, and llama-server and vLLM serve), on the same chat models, engine and queue as chat."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from api.chat import choice_text, counted_deltas, event_stream, sampling_of
from api.chat_schemas import COMPLETION_RESPONSES, Completion, CompletionRequest
from api.routes import JSON
from onnxvec.chat.generate import Sampling
from onnxvec.chat.service import ChatService, Prepared

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint


@router.post("/completions", response_model=Completion, responses=COMPLETION_RESPONSES)
async def completions(body: CompletionRequest, request: Request) -> Response:
    chat: ChatService = request.app.state.chat
    sampling = sampling_of(body, body.max_tokens or DEFAULT_MAX_TOKENS)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    owner = request.state.owner
    prepared = [await chat.prepare_text(body.model, prompt, sampling, owner) for prompt in prompts]
    echoes = prompts if body.echo else [""] * len(prompts)
    chat.admit(prepared[0].engine.name, owner)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": prepared[0].engine.name}
    if body.stream:
        events = _events(chat, prepared, echoes, body, sampling, head, request.app.state.metrics)
        return event_stream(events)
    choices, completion_tokens = [], 0
    for number, (index, prompt) in enumerate(_choices(prepared, body.n)):
        text, generation = await choice_text(request, prompt, sampling, number)
        completion_tokens += generation.completion_tokens
        text = echoes[index // body.n] + text
        choices.append({"text": text, "index": index, "logprobs": None, "finish_reason": _finish(generation)})
    return JSON(
        head | {"object": "text_completion", "choices": choices, "usage": _usage(prepared, body.n, completion_tokens)}
    )


def _choices(prepared: list[Prepared], n: int) -> list[tuple[int, Prepared]]:
    """OpenAI's order: n choices per prompt, index = prompt number * n + choice."""
    return [(number * n + choice, prompt) for number, prompt in enumerate(prepared) for choice in range(n)]


def _finish(generation: Any) -> str:
    return "length" if generation.finish_reason == "length" else "stop"


def _usage(prepared: list[Prepared], n: int, completion_tokens: int) -> dict[str, int]:
    prompt_tokens = sum(len(p.prompt_ids) for p in prepared) * n
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _events(
    chat: ChatService,
    prepared: list[Prepared],
    echoes: list[str],
    body: CompletionRequest,
    sampling: Sampling,
    head: dict,
    metrics: Any,
) -> AsyncIterator[bytes]:
    """text_completion chunks: text deltas per choice, then its finish_reason; usage if asked for."""

    def event(choices: list[dict], **extra: Any) -> bytes:
        return b"data: " + orjson.dumps(head | {"object": "text_completion", "choices": choices} | extra) + b"\n\n"

    completion_tokens = 0
    for number, (index, prompt) in enumerate(_choices(prepared, body.n)):
        if echo := echoes[index // body.n]:
            yield event([{"text": echo, "index": index, "logprobs": None, "finish_reason": None}])
        generation = chat.start(prompt, sampling, number)
        async with contextlib.aclosing(counted_deltas(chat, prompt, generation, metrics)) as deltas:
            async for delta in deltas:
                yield event([{"text": delta, "index": index, "logprobs": None, "finish_reason": None}])
        completion_tokens += generation.completion_tokens
        yield event([{"text": "", "index": index, "logprobs": None, "finish_reason": _finish(generation)}])
    if body.stream_options and body.stream_options.include_usage:
        yield event([], usage=_usage(prepared, body.n, completion_tokens))
