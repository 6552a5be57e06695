"""Cancel a run once, then wait until it has unwound.

anyio's cancel scopes (Starlette's streaming responses, sse-starlette, apps written with
structured concurrency) cancel the task inside them again on every turn of the event loop until
it ends, and `asyncio.gather` passes each of those cancellations on to what it waits for.
LangGraph unwinds a cancelled `astream` in a task of its own (its loop's exit: cancel the running
nodes, wait for them) and gives up waiting for that when cancelled a second time, so a node whose
cancellation was not yet delivered keeps running, and its model call is made after the run has
ended. No library offers "pass a cancellation on once and wait out the rest", hence this helper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_once(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` in a task of its own. If the caller is cancelled, the task is cancelled once
    and the caller waits until it has ended (later cancellations only wait), then raises
    CancelledError: when this returns or raises, nothing of `coro` is still running."""
    task = asyncio.ensure_future(coro)  # the task copies this context: the run's span, scopes, config
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():  # the coroutine itself was cancelled, from inside
            raise
        task.cancel()
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                continue  # the unwinding is under way; cutting it short would leave a node running
        if not task.cancelled():
            task.exception()  # an error while unwinding is not news to anyone: the caller was cancelled
        raise
