"""Run a coroutine to completion from synchronous code, whether or not this thread already runs
an event loop (a notebook, a synchronous LangGraph node called from async code).

- In the main thread without a running loop (a script), the coroutine runs in this thread on
  one event loop kept for the process, the same for every call, closed at exit. HTTP
  connections belong to the loop that opened them: with a new `asyncio.run` loop per call, a
  client kept for the process (langchain-openai keeps its default httpx client that way) would
  reuse a connection of a finished loop on the second `magicore.solve(...)` and fail with
  "Event loop is closed". One loop keeps connections and magicore's per-server request limits
  alive from call to call.
- In another thread without a running loop (a worker pool, LangGraph's executor for
  synchronous nodes), it is `asyncio.run`: each call gets its own loop, so calls made from
  threads that a loop is waiting on never wait on that same loop.
- With a running loop in this thread, blocking it is what the caller asked for by calling a
  synchronous function; the coroutine then runs on a fresh loop in a daemon thread while this
  thread waits.

Context variables (LangGraph's run config, tracing, usage scopes) are copied, so the coroutine
sees the caller's run; an interrupt (Ctrl-C) while waiting cancels it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_main_loop: asyncio.AbstractEventLoop | None = None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    context = contextvars.copy_context()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        future = _on_fresh_loop(lambda: context.run(asyncio.ensure_future, coro))
        try:
            return future.result()
        except BaseException:
            future.cancel()  # an interrupt while waiting: the run stops too (no-op once it has ended)
            raise
    if threading.current_thread() is not threading.main_thread():
        return context.run(asyncio.run, coro)
    loop = _the_main_loop()
    task = context.run(loop.create_task, coro)  # the task copies the context it is created in
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():  # interrupted while waiting: cancel the run and let it unwind
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        raise


def _the_main_loop() -> asyncio.AbstractEventLoop:
    global _main_loop
    if _main_loop is None or _main_loop.is_closed():
        _main_loop = asyncio.new_event_loop()
        atexit.register(_close, _main_loop)
    return _main_loop


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: finish the loop's async generators (which close its HTTP sessions), then close it."""
    if loop.is_closed() or loop.is_running():
        return
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _forget_after_fork() -> None:
    global _main_loop
    _main_loop = None  # the parent's: its selector is shared with the parent, never to be used here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _on_fresh_loop(make: Callable[[], Any]) -> concurrent.futures.Future:
    """`make()` awaited under `asyncio.run` in a new daemon thread; cancelling the returned future
    cancels the run (the thread unwinds it and ends on its own)."""
    result: concurrent.futures.Future = concurrent.futures.Future()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> Any:
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
            with contextlib.suppress(RuntimeError):  # the run ended meanwhile: its loop is closed
                holder["loop"].call_soon_threadsafe(holder["task"].cancel)

    result.add_done_callback(on_done)
    threading.Thread(target=target, name="magicore-sync", daemon=True).start()
    return result
