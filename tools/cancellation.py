"""Cancel a run once, then wait until it has unwound.

anyio's cancel scopes (Starlette's streaming responses, sse-starlette, apps written with
structured concurrency) cancel the task inside them again on every turn of the event loop until
it ends, and `asyncio.gather` passes each of those cancellations on to what it waits for.
LangGraph unwinds a cancelled `astream` in a task of its own (its loop's exit: cancel the running
nodes, wait for them) and gives up waiting for that when cancelled a second time, so a node whose
cancellation was not yet delivered keeps running, and its model call is made after the run has
ended (langchain-ai/langgraph#5682, open, as of LangGraph 1.2.24). No library offers "pass a
cancellation on once and wait out the rest", hence this helper.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


async def cancel_once(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` in a task of its own. If the caller is cancelled, the task is cancelled once
    and the caller waits until it has ended (later cancellations only wait), then raises
    CancelledError. When this returns or raises, `coro` has unwound: for a graph run, no node is
    running and no model call of it is in flight (work a node handed to a thread, such as a
    sandboxed program, still ends by its own time limit)."""
    task = asyncio.ensure_future(coro)  # the task copies this context: the run's span, scopes, config
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():  # it ended in the same turn (cancelled from inside, or done): nothing to wait for
            raise
        task.cancel()
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                continue  # the unwinding is under way; cutting it short would leave a node running
        if not task.cancelled() and task.exception() is not None:
            # the caller was cancelled and gets its CancelledError; the error is logged, not lost
            log.debug("an error while a cancelled run unwound", exc_info=task.exception())
        raise
