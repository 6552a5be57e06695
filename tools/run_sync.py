"""Run a coroutine to completion from synchronous code, whether or not this thread already runs
an event loop (a notebook, a synchronous LangGraph node called from async code).

Without a running loop, the coroutine runs on one long-lived event loop in a daemon thread,
the same loop for every call of the process. HTTP connections belong to the loop that opened
them: with a new `asyncio.run` loop per call, a client kept for the process (langchain-openai
keeps its default httpx client that way) would reuse a connection of a finished loop on the
second `magicore.solve(...)` and fail with "Event loop is closed". One loop keeps connections
and magicore's per-server request limits alive from call to call.

With a running loop in this thread, blocking it is what the caller asked for by calling a
synchronous function; the coroutine then runs on a fresh loop in a daemon thread while this
thread waits (it cannot go to the shared loop: this thread may be that loop's own). That beats
the alternatives (an error, or patching the loop as nest_asyncio does).

Either way context variables (LangGraph's run config, tracing, usage scopes) are copied, so the
coroutine sees the caller's run; an interrupt (Ctrl-C) while waiting cancels it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_shared: asyncio.AbstractEventLoop | None = None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    context = contextvars.copy_context()

    async def in_context() -> T:
        # the task copies the context it is created in: the caller's
        return await context.run(asyncio.ensure_future, coro)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        future = asyncio.run_coroutine_threadsafe(in_context(), _shared_loop())
    else:
        future = _on_fresh_loop(in_context)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # an interrupt while waiting: the run stops too (no-op once it has ended)
        raise


def _on_fresh_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future:
    """`make()` run by `asyncio.run` in a new daemon thread; cancelling the returned future
    cancels the run (the thread unwinds it and ends on its own)."""
    result: concurrent.futures.Future = concurrent.futures.Future()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> T:
        holder["loop"], holder["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await make()

    def target() -> None:
        try:
            value = asyncio.run(main())
        except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
            if not result.cancelled():
                result.set_exception(error)
        else:
            if not result.cancelled():
                result.set_result(value)

    def on_done(future: concurrent.futures.Future) -> None:
        if future.cancelled() and started.wait(5):
            holder["loop"].call_soon_threadsafe(holder["task"].cancel)

    result.add_done_callback(on_done)
    threading.Thread(target=target, name="magicore-sync", daemon=True).start()
    return result


def _shared_loop() -> asyncio.AbstractEventLoop:
    global _shared
    with _lock:
        if _shared is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="magicore-sync-loop", daemon=True).start()
            atexit.register(_close, loop)
            _shared = loop
        return _shared


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: finish the loop's async generators (which close its HTTP sessions), then stop."""
    try:
        asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(5)
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    loop.call_soon_threadsafe(loop.stop)
