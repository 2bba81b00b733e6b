"""Work for a client that left is stopped, not finished for nobody.

Starlette does not cancel a handler whose client disconnects (only streaming responses notice), so a
long request's work — 100,000 inputs queued for the model, a non-streaming generation — went on for
minutes after its client timed out. `unless_gone` races the work against the client's disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")
GONE = 499  # nginx's "client closed request": logged and counted, never seen by the client


class ClientGone(Exception):
    """The client disconnected before its answer was ready; the work was cancelled."""


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """The work's result; if the client disconnects first, the work is cancelled and ClientGone raised."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    working, gone = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({working, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler was cancelled (shutdown): so is its work
        working.cancel()
        raise
    finally:
        gone.cancel()
    if working.done():
        return working.result()
    if gone.exception() is not None:  # not a disconnect: the listener failed; the client still waits
        return await working
    working.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await working
    raise ClientGone
