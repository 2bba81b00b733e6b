"""Fair turns at a resource one request uses at a time (a chat model's generator): waiting requests
are served by owner in rotation (an owner is a client: its API key or address), FIFO within an owner,
so one client's queue of requests never stands in front of everyone else's."""

from __future__ import annotations

import asyncio
from collections import deque

from onnxvec.embedding.microbatch import ALL_CLIENTS
from onnxvec.errors import Overloaded


class FairTurns:
    """One holder at a time. `per_owner` requests of one owner may wait (more are refused with
    Overloaded), and `ALL_CLIENTS` owners' full shares over all owners together."""

    def __init__(self, per_owner: int) -> None:
        self.per_owner = per_owner
        self._held = False
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}  # dict order is the rotation

    @property
    def held(self) -> bool:
        """Someone's turn is running now."""
        return self._held

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    def admit(self, owner: str) -> None:
        """Raise Overloaded when `owner` could not wait for a turn now (checked before any work)."""
        if not self._held:
            return
        mine = len(self._waiting.get(owner, ()))
        if mine >= self.per_owner:
            raise Overloaded(f"{mine} of your requests are already waiting for this model")
        if self.waiting >= max(1, ALL_CLIENTS * self.per_owner):
            raise Overloaded(f"{self.waiting} requests of many clients are already waiting for this model")

    async def acquire(self, owner: str) -> None:
        """Wait for this owner's turn; a caller cancelled while waiting leaves the queue."""
        self.admit(owner)
        if not self._held and not self._waiting:
            self._held = True
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed the turn as it was cancelled: pass it on
                self.release()
            else:
                self._drop(owner, turn)
            raise

    def release(self) -> None:
        """End the holder's turn: the next owner in rotation (its oldest request) gets it."""
        while self._waiting:
            owner = next(iter(self._waiting))
            queue = self._waiting.pop(owner)
            turn = queue.popleft()
            if queue:
                self._waiting[owner] = queue  # back of the rotation
            if not turn.done():  # not cancelled before its waiter could leave the queue
                turn.set_result(None)
                return
        self._held = False

    def _drop(self, owner: str, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(owner)
        if queue is not None and turn in queue:
            queue.remove(turn)
            if not queue:
                del self._waiting[owner]
