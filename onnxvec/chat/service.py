"""Chat completions, optionally retrieval-augmented: retrieve, prompt, generate.

`ChatService` lives in the server's event loop. A request naming a collection has the top chunks
for its last user message retrieved (in its search mode, filter and minimum score applied) and handed
to the model as numbered sources; the sources that fit the context come back as `retrieved`, and
those the answer uses as `citations` (onnxvec/chat/citations.py). Each model runs in a process of
its own (onnxvec/chat/process.py: its prefill would hold this process's GIL), one completion at a
time; waiting requests take turns by client (onnxvec/chat/turns.py), and a client with
`max_queued_chats` requests waiting is answered Overloaded (429).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine

from onnxvec.chat.citations import used_sources
from onnxvec.chat.generate import Sampling
from onnxvec.chat.process import RemoteChatEngine, RemoteGeneration
from onnxvec.chat.prompt import Message, Prompt, fit
from onnxvec.chat.turns import FairTurns
from onnxvec.config import SearchMode, Settings
from onnxvec.embedding.service import EmbeddingService
from onnxvec.errors import GenerationError, InvalidRequest
from onnxvec.models.manifest import ModelManifest, require
from onnxvec.models.store import ModelStore
from onnxvec.retrieval.fusion import Fusion
from onnxvec.retrieval.search import find_collection, search_text
from onnxvec.storage.chunks import Hit
from onnxvec.values import invalid_unicode

T = TypeVar("T")


@dataclass
class ChatRequest:
    messages: list[Message]
    model: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    n: int = 1
    collection: str | None = None
    k: int = 4
    filter: dict[str, Any] | None = None
    min_score: float | None = None
    rerank: bool = False  # re-score the candidates with a reranker (onnxvec/retrieval/rerank.py)
    rerank_model: str | None = None
    mode: SearchMode | None = None  # None: the settings' search mode
    owner: str = ""  # the client (key digest or address): turns at the model rotate between clients


@dataclass
class Prepared:
    engine: RemoteChatEngine
    prompt: Prompt
    prompt_ids: list[int]
    retrieval_ms: float = 0.0
    owner: str = ""  # the client it is for, whose turn at the model it waits for
    question: str = ""  # what the sources were retrieved for: its words are no sign of using a source

    def retrieved(self) -> list[dict[str, Any]]:
        """Every source the prompt numbered, in its order."""
        return [_source(number, hit) for number, hit in enumerate(self.prompt.sources, start=1)]

    def citations(self, answers: Sequence[str]) -> list[dict[str, Any]]:
        """The sources the answers use: their [n] markers, or words quoted or restated from them."""
        used = used_sources(answers, self.prompt.sources, self.question)
        return [_source(n, self.prompt.sources[n - 1]) | {"evidence": how} for n, how in used.items()]


def last_user(messages: Sequence[Message]) -> str | None:
    """The last user message's text: what is retrieved for, and the question the sources answer."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)


def _source(number: int, hit: Hit) -> dict[str, Any]:
    return {
        "index": number,
        "document_id": hit.document_id,
        "external_id": hit.external_id,
        "source": hit.source,
        "chunk": hit.ordinal,
        "score": hit.score,
    }


RAG_MAX_TOKENS = 256  # an answer from sources is short; a request may ask for more
# An answer from sources starts with a letter: asked to cite as [n], the 0.5B default model otherwise
# answers "[1]" alone to short questions, and with only "[" forbidden, "1" (README, Benchmarks).
ANSWER_FIRST = r"\p{L}[\s\S]*"


def rag_sampling(sampling: Sampling) -> Sampling:
    """What an answer from sources is generated with: the loop guard on (a small model that loops
    repeats a sentence to the token limit), a default length where the request gave none, and the
    answer first (unless the request constrains the output to a JSON schema)."""
    return replace(
        sampling,
        loop_guard=True,
        max_tokens=sampling.max_tokens or RAG_MAX_TOKENS,
        regex=ANSWER_FIRST if sampling.json_schema is None else None,
    )


class _Model:
    """A loaded chat model (its process) with the thread that relays its generations and the turns
    at it, fair between clients."""

    def __init__(self, engine: RemoteChatEngine, manifest: ModelManifest, per_client: int) -> None:
        self.engine = engine
        self.manifest = manifest
        self.turns = FairTurns(per_client)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"generate-{engine.name}")


class ChatService:
    def __init__(self, settings: Settings, db: Engine, embeddings: EmbeddingService) -> None:
        self.settings = settings
        self.db = db
        self.embeddings = embeddings
        self.store = ModelStore(settings.models_dir)
        self._models: dict[str, _Model] = {}
        self._lock = asyncio.Lock()
        # calls into the models' processes wait while a prefill runs there: on threads of their own, so
        # that waiting chats never take the threads the rest of the API runs its blocking work on
        self._calls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chat-calls")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._calls, partial(fn, *args))

    def manifest(self, name: str | None) -> ModelManifest:
        name = name or self.settings.chat_model
        if name in self._models:  # loaded: no disk read on the request path
            return self._models[name].manifest
        return require(self.store.get(name), "chat")

    async def load(self, name: str | None = None) -> None:
        """Load a chat model now (the default when None), so its first request does not wait for it."""
        await self._model(name)

    async def _model(self, name: str | None) -> _Model:
        manifest = self.manifest(name)
        loaded = self._models.get(manifest.name)
        if loaded is not None and loaded.engine.alive:  # the request path: no lock once loaded
            return loaded
        async with self._lock:
            loaded = self._models.get(manifest.name)
            if loaded is None or not loaded.engine.alive:  # never loaded, or its process died: (re)start it
                if loaded is not None:
                    await asyncio.to_thread(loaded.engine.close)
                    loaded.executor.shutdown(wait=False)
                folder, nice = self.store.path(manifest.name), self.settings.compute_niceness
                engine = await asyncio.to_thread(RemoteChatEngine, folder, manifest.name, nice)
                self._models[manifest.name] = _Model(engine, manifest, self.settings.max_queued_chats)
        return self._models[manifest.name]

    async def prepare(self, request: ChatRequest) -> Prepared:
        """Retrieve (if a collection is named), fit the prompt into the context, tokenize it."""
        for index, message in enumerate(request.messages):
            _check_text(message["content"], f"messages.{index}.content")
        model = await self._model(request.model)
        engine = model.engine
        self.admit(engine.name, request.owner)  # before any work for it
        if not engine.has_template:
            raise InvalidRequest(f"The model '{engine.name}' has no chat template, so it cannot chat.", "model")
        context = engine.context_length
        if request.sampling.max_tokens is not None and request.sampling.max_tokens >= context:
            raise InvalidRequest(f"'max_tokens' must be below this model's context length ({context}).", "max_tokens")
        await self._check(engine, request.sampling)
        loop = asyncio.get_running_loop()
        started = loop.time()
        hits = await self.retrieve(request) if request.collection else []
        retrieval_ms = (loop.time() - started) * 1000
        reserve = request.sampling.max_tokens or (RAG_MAX_TOKENS if hits else min(512, context // 4))

        def build() -> Prepared:
            prompt = fit(request.messages, hits, engine.count, context - reserve)
            ids = engine.prompt_ids(prompt.messages)
            return Prepared(engine, prompt, ids, retrieval_ms, request.owner, last_user(request.messages) or "")

        return await self._call(build)  # PromptTooLong: a 400 naming `messages`

    async def prepare_text(self, model_name: str | None, prompt: str, sampling: Sampling, owner: str = "") -> Prepared:
        """A plain-text prompt (OpenAI's legacy /v1/completions): no template, no retrieval."""
        _check_text(prompt, "prompt")
        engine = (await self._model(model_name)).engine
        self.admit(engine.name, owner)
        await self._check(engine, sampling)
        ids = await self._call(engine.encode, prompt)
        wanted = sampling.max_tokens or 1
        if not ids or len(ids) + wanted > engine.context_length:
            raise InvalidRequest(
                f"The prompt has {len(ids)} tokens; with max_tokens {wanted} it must fit this model's context "
                f"of {engine.context_length} tokens (and not be empty).",
                "prompt",
            )
        return Prepared(engine, Prompt([], [], 0), ids, owner=owner)

    async def retrieve(self, request: ChatRequest) -> list[Hit]:
        """Top-k chunks of the collection for the last user message, above the minimum score."""
        query = last_user(request.messages)
        if not query:  # an unknown collection is still a 404 first, as on every route that names one
            await asyncio.to_thread(find_collection, self.db, request.collection or "")
            raise InvalidRequest("Retrieval needs a user message to search with.", "messages")
        found = await search_text(
            self.db,
            self.embeddings,
            request.collection or "",
            query,
            request.k,
            filter=request.filter,
            mode=request.mode or self.settings.search_mode,
            fusion=Fusion.of(self.settings),
            owner=request.owner,
            rerank=request.rerank,
            rerank_model=request.rerank_model,
        )
        return [h for h in found.hits if request.min_score is None or h.score >= request.min_score]

    def admit(self, name: str, owner: str) -> None:
        """Overloaded now rather than after a stream has begun (when a 429 can no longer be sent)."""
        self._models[name].turns.admit(owner)

    def start(self, prepared: Prepared, sampling: Sampling, index: int = 0) -> RemoteGeneration:
        """Choice `index` of a request (a given seed becomes seed + index, so n choices differ). An
        answer from sources gets the RAG defaults where the request left them open."""
        if prepared.prompt.sources:
            sampling = rag_sampling(sampling)
        seeded = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + index)
        return prepared.engine.generate(prepared.prompt_ids, seeded, threading.Event())

    async def stream(self, generation: RemoteGeneration, owner: str = "") -> AsyncIterator[str]:
        """Text deltas of a generation, run on its model's thread once it is `owner`'s turn.

        Closing this iterator early (a client went away) stops the generation at the next token
        and frees the turn; afterwards the generation holds finish_reason and completion_tokens.
        """
        model = self._models[generation.engine.name]
        await model.turns.acquire(owner)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

        def produce() -> None:
            try:
                for text in generation:
                    loop.call_soon_threadsafe(queue.put_nowait, text)
            except Exception as exc:  # noqa: BLE001 (handed to the awaiting coroutine)
                loop.call_soon_threadsafe(queue.put_nowait, exc)
                return
            loop.call_soon_threadsafe(queue.put_nowait, None)

        try:
            running = loop.run_in_executor(model.executor, produce)
        except BaseException:
            model.turns.release()
            raise
        running.add_done_callback(lambda _: model.turns.release())  # the turn ends when the thread does
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            generation.cancel.set()

    async def _check(self, engine: RemoteChatEngine, sampling: Sampling) -> None:
        """Refuse now what genai would refuse once generating (a JSON schema it cannot compile)."""
        if sampling.json_schema is None:
            return
        try:
            await self._call(engine.check, sampling)
        except GenerationError as exc:
            raise InvalidRequest(str(exc), "response_format") from exc

    async def close(self) -> None:
        for model in self._models.values():
            await asyncio.to_thread(model.engine.close)  # a generation still relayed ends with an error
            model.executor.shutdown(wait=True, cancel_futures=True)
        self._calls.shutdown(wait=False, cancel_futures=True)


def _check_text(text: str, param: str) -> None:
    if invalid_unicode(text):
        raise InvalidRequest(f"'{param}' is not valid Unicode (an unpaired surrogate).", param)
