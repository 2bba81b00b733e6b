"""Fair turns at a chat model (pure logic on an event loop): rotation between clients, FIFO within
one, per-client and overall caps, and waiters that leave."""

from __future__ import annotations

import asyncio

import pytest

from onnxvec.chat.turns import FairTurns
from onnxvec.embedding.microbatch import ALL_CLIENTS
from onnxvec.errors import Overloaded


async def _queue(turns: FairTurns, order: list[str], owner: str, label: str) -> None:
    await turns.acquire(owner)
    order.append(label)
    await asyncio.sleep(0)
    turns.release()


def test_waiters_rotate_between_owners_fifo_within_one() -> None:
    async def run() -> list[str]:
        turns, order = FairTurns(per_owner=8), []
        await turns.acquire("a")  # a holds the turn while the others queue
        tasks = [
            asyncio.create_task(_queue(turns, order, owner, label))
            for owner, label in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("c", "c1"), ("b", "b2")]
        ]
        await asyncio.sleep(0)
        assert turns.waiting == 6 and turns.held
        turns.release()
        await asyncio.gather(*tasks)
        assert not turns.held and turns.waiting == 0
        return order

    assert asyncio.run(run()) == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_a_client_past_its_share_is_refused_others_are_not() -> None:
    async def run() -> None:
        turns = FairTurns(per_owner=2)
        turns.admit("a")  # nothing held: anyone may start
        await turns.acquire("a")
        waiters = [asyncio.create_task(turns.acquire("a")) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="2 of your requests"):
            turns.admit("a")
        turns.admit("b")  # another client still gets in line
        many = [asyncio.create_task(turns.acquire(f"client-{i}")) for i in range(ALL_CLIENTS * 2 - 2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="many clients"):
            turns.admit("latecomer")
        for task in waiters + many:
            task.cancel()
        await asyncio.gather(*waiters, *many, return_exceptions=True)
        assert turns.waiting == 0 and turns.held

    asyncio.run(run())


def test_a_waiter_that_leaves_frees_its_place_and_never_keeps_the_turn() -> None:
    async def run() -> list[str]:
        turns, order = FairTurns(per_owner=8), []
        await turns.acquire("a")
        gone = asyncio.create_task(_queue(turns, order, "b", "b-gone"))
        stays = asyncio.create_task(_queue(turns, order, "c", "c1"))
        await asyncio.sleep(0)
        gone.cancel()  # cancelled while waiting
        turns.release()  # in the same step: the turn must pass over it to c
        await asyncio.gather(gone, stays, return_exceptions=True)
        assert gone.cancelled() and not turns.held and turns.waiting == 0
        return order

    assert asyncio.run(run()) == ["c1"]
