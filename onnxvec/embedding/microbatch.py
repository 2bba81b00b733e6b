"""Micro-batching: concurrent requests' inputs coalesce into token-budget batches on one engine (an
embedding model's texts, or a reranker's (query, document) pairs: one scheduler for both).

Requests put their token ids in their owner's FIFO queue (an owner is a client: its API key or
address); a single loop takes inputs from the owners in turn, one each, until the next ONNX forward is
full (token budget, batch size) or nothing waits, runs that forward on a worker thread (the event
loop keeps serving), and hands each request its rows as they come back. Large requests are split
across forwards this way, and another client's small request rides in the very next forward however
much one client queued. A request whose caller went away (cancelled) leaves the queue at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from onnxvec.embedding.batching import plan_batches
from onnxvec.embedding.engine import OnnxEncoder
from onnxvec.errors import Overloaded

ALL_CLIENTS = 8  # the queue takes new work while under this many clients' full shares (one big request each)


@dataclass
class BatchTiming:
    """Where a request's time went: waiting for its first forward, and inside forwards."""

    queue_ms: float = 0.0
    inference_ms: float = 0.0


@dataclass
class _Request:
    ids: list[Sequence[int]]
    vectors: np.ndarray
    future: asyncio.Future[BatchTiming]
    enqueued: float = field(default_factory=time.perf_counter)
    remaining: int = 0
    timing: BatchTiming = field(default_factory=BatchTiming)


class MicroBatcher:
    """One engine's forward queue, feeding `forwards` concurrent forwards. Use it inside one event loop.

    On CPU the best use of n cores for a stream of small requests is n single-threaded forwards at
    once (see bench/api.py): no intra-op synchronisation, and one forward computes while the other's
    batch is being formed and answered. The engine should then be loaded with one ONNX thread.
    """

    def __init__(
        self,
        engine: OnnxEncoder,
        *,
        forwards: int = 1,
        niceness: int = 0,
        max_wait_ms: float = 2.0,
        max_queued_inputs: int = 8192,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.forwards = forwards
        self.max_wait = max_wait_ms / 1000
        self.max_queued_inputs = max_queued_inputs
        self.on_batch = on_batch  # (inputs, padded tokens, seconds) per forward, for metrics
        self._queues: dict[str, deque[tuple[_Request, int]]] = {}  # by owner; dict order is the turn order
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._idle = forwards
        self._executor = ThreadPoolExecutor(
            max_workers=forwards,
            thread_name_prefix=f"forward-{engine.manifest.name}",
            initializer=_lower_priority,
            initargs=(niceness,),
        )
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def queued_inputs(self) -> int:
        return self._queued

    async def embed(self, ids: Sequence[Sequence[int]], owner: str = "") -> tuple[np.ndarray, BatchTiming]:
        """Vectors for `ids` (already truncated, with special tokens), in order. An owner with
        `max_queued_inputs` waiting is refused (a big request alone never is); others are not."""
        waiting = len(self._queues.get(owner, ()))
        if waiting >= self.max_queued_inputs:
            raise Overloaded(f"{waiting} of your inputs are already waiting for the model")
        shares = sum(min(len(queue), self.max_queued_inputs) for queue in self._queues.values())
        if shares >= ALL_CLIENTS * self.max_queued_inputs:  # many clients at once: memory stays bounded
            raise Overloaded(f"{self._queued} inputs of many clients are already waiting for the model")
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        request = _Request(
            ids=list(ids),  # as given: a reranker's pairs carry their segments
            vectors=np.empty((len(ids), self.engine.dims), dtype=np.float32),
            future=asyncio.get_running_loop().create_future(),
            remaining=len(ids),
        )
        if not ids:
            return request.vectors, request.timing
        self._queues.setdefault(owner, deque()).extend((request, i) for i in range(len(ids)))
        self._queued += len(ids)
        request.future.add_done_callback(lambda _: self._forget(owner, request))
        self._wakeup.set()
        return request.vectors, await request.future

    def _forget(self, owner: str, request: _Request) -> None:
        """A request that ended early (cancelled: its caller went away; or failed) leaves the queue now."""
        queue = self._queues.get(owner)
        if not queue or request.remaining == 0:
            return
        kept = deque(entry for entry in queue if entry[0] is not request)
        self._queued -= len(queue) - len(kept)
        if kept:
            self._queues[owner] = kept
        else:
            del self._queues[owner]

    async def close(self) -> None:
        for task in [self._loop_task, *self._running]:
            if task is not None:
                task.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _take(self) -> list[tuple[_Request, int]]:
        """Inputs for one forward, one from each owner in turn: within the token budget and batch size,
        and no more than an even share when other forwards are idle, so every core gets work."""
        share = -(-self._queued // self._idle)
        taken: list[tuple[_Request, int]] = []
        longest = 0
        while self._queues and len(taken) < min(self.engine.max_batch_size, share):
            owner, queue = next(iter(self._queues.items()))
            request, i = queue[0]
            if request.future.done():  # cancelled a moment ago: _forget is about to drop the rest
                queue.popleft()
                self._queued -= 1
                if not queue:
                    del self._queues[owner]
                continue
            length = max(longest, len(request.ids[i]))
            if taken and length * (len(taken) + 1) > self.engine.token_budget:
                break
            taken.append(queue.popleft())
            self._queued -= 1
            longest = length
            del self._queues[owner]  # to the back of the turn order, if it has more
            if queue:
                self._queues[owner] = queue
        return taken

    async def _run(self) -> None:
        """Start a forward whenever one is idle and inputs wait; a first arrival waits max_wait for company."""
        loop = asyncio.get_running_loop()
        freed = asyncio.Event()
        while True:
            if not self._queues:
                self._wakeup.clear()
                await self._wakeup.wait()
                if self.max_wait and self._idle == self.forwards:
                    await asyncio.sleep(self.max_wait)  # let concurrent requests join the first forward
            if not self._idle:
                freed.clear()
                await freed.wait()
                continue
            taken = self._take()
            if not taken:
                continue
            self._idle -= 1
            task = loop.create_task(self._forward_and_answer(taken, loop))
            self._running.add(task)
            task.add_done_callback(lambda t: (self._running.discard(t), self._release(freed)))

    def _release(self, freed: asyncio.Event) -> None:
        self._idle += 1
        freed.set()

    async def _forward_and_answer(self, taken: list[tuple[_Request, int]], loop: asyncio.AbstractEventLoop) -> None:
        started = time.perf_counter()
        for request, _ in taken:
            if request.remaining == len(request.ids):
                request.timing.queue_ms = (started - request.enqueued) * 1000
        batch = [request.ids[i] for request, i in taken]
        requests = list({id(r): r for r, _ in taken}.values())
        try:
            vectors = await loop.run_in_executor(self._executor, self._forward, batch)
        except Exception as exc:  # the model failed on this batch: its requests fail, the others go on
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        if self.on_batch:
            self.on_batch(len(batch), max(map(len, batch)) * len(batch), seconds)
        for (request, i), vector in zip(taken, vectors, strict=True):
            request.vectors[i] = vector
            request.remaining -= 1
        for request in requests:
            request.timing.inference_ms += seconds * 1000
            if request.remaining == 0 and not request.future.done():
                request.future.set_result(request.timing)

    def _forward(self, batch: list[Sequence[int]]) -> np.ndarray:
        """Sorted by length and split where padding would cost more than another run (measured on
        single-threaded forwards of 8-16 random sentences: +7-10% tokens/s over one padded run)."""
        out = np.empty((len(batch), self.engine.dims), dtype=np.float32)
        lengths = [len(x) for x in batch]
        for rows in plan_batches(lengths, self.engine.token_budget, self.engine.max_batch_size, padding_free_tokens=0):
            out[rows] = self.engine.forward([batch[i] for i in rows])
        return out


def _lower_priority(niceness: int) -> None:
    """Run forwards at a lower CPU priority than the event loop (Linux: per-thread nice).

    With every core busy in ONNX Runtime, an answer or a new request would otherwise wait for a
    scheduler slice; the loop's work is short, and doing it at once keeps the forwards fed
    (bench/api.py: ratio 0.68-0.71 at nice 0, 0.72-0.76 at nice 10).
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
