"""Run a coroutine to completion from synchronous code, whether or not this thread already runs
an event loop (a notebook, a synchronous LangGraph node called from async code).

Without a running loop it is `asyncio.run`. With one, the coroutine runs on a fresh loop in a
worker thread while this thread waits: blocking a running loop is what the caller asked for by
calling a synchronous function, and it beats the alternative (an error, or patching the loop as
nest_asyncio does). Context variables (LangGraph's run config, tracing, usage scopes) are
copied into the worker, so the coroutine sees the caller's run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="magicore-sync") as pool:
        return pool.submit(context.run, asyncio.run, coro).result()
