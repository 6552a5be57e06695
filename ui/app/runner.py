"""One asyncio event loop per UI server process, in a background thread, and runs on it that
the Streamlit script thread can watch and cancel.

Why not `asyncio.run` in the script thread on every rerun: HTTP connections, and magicore's
per-server request limits (tools/llm.py), belong to the loop that made them, so a loop per
question would reconnect every time and let concurrent browser sessions overrun a server's
limit. One long-lived loop shares both, and makes cancellation explicit: `Run.cancel` cancels
the task and waits until it has finished unwinding (model requests closed, files closed).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str = "magicore-ui-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for its result (for short operations)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, make: Callable[[Callable[[dict], None]], Awaitable[T]]) -> Run[T]:
        """Start `make(emit)` on the loop; `emit` queues progress events for the caller."""
        return Run(self, make)


class Run:
    """A coroutine running on a LoopThread: its events, its end, its cancellation."""

    def __init__(self, owner: LoopThread, make: Callable[[Callable[[dict], None]], Awaitable[Any]]):
        self.events: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self._done = threading.Event()

        async def spawn() -> asyncio.Task:
            task = asyncio.ensure_future(make(self.events.put))
            task.add_done_callback(lambda _t: self._done.set())
            return task

        self._loop = owner.loop
        self._task: asyncio.Task = owner.call(spawn())

    def wait(self, timeout: float) -> bool:
        """True once the run has ended (result, error or cancellation)."""
        return self._done.wait(timeout)

    def drain(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def cancel(self, timeout: float = 15.0) -> bool:
        """Cancel the run and wait until it has unwound; True if it ended within `timeout`."""
        self._loop.call_soon_threadsafe(self._task.cancel)
        return self._done.wait(timeout)

    @property
    def cancelled(self) -> bool:
        return self._done.is_set() and self._task.cancelled()

    def result(self) -> Any:
        """The run's return value (raises its exception); only once `wait` returned True."""
        if not self._done.is_set():
            raise RuntimeError("the run has not finished")
        return self._task.result()
