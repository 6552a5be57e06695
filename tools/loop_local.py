"""One value per running event loop (an HTTP session, a set of semaphores), released when that
loop finishes.

Hand-written: asyncio has neither per-loop storage nor a "loop finished" callback. A dict keyed
by the loop itself (or a WeakKeyDictionary) never lets go, because the values hold their loop.
So values are kept by `id(loop)` next to a weak reference to the loop, and each has a keeper: an
async generator parked at its `yield`. `asyncio.run` finalizes async generators before it
closes the loop (`loop.shutdown_asyncgens`), which runs the keeper's `finally`: the value is
closed and forgotten there. A loop closed without that step (`loop.close()` straight after
`run_until_complete`) cannot run its keeper; its value is closed as far as that is still
possible, and forgotten, when another loop asks.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """`await local.get()` returns the running loop's value, made by `make()` on first use or
    when `usable(value)` says the old one can no longer serve (a closed session)."""

    def __init__(
        self,
        make: Callable[[], T],
        close: Callable[[T], Awaitable[None]] | None = None,
        usable: Callable[[T], bool] = lambda value: True,
    ):
        self._make, self._close, self._usable = make, close, usable
        #: id(loop) -> (weak reference to the loop, its value, the keeper that releases it)
        self._entries: dict[int, tuple[weakref.ref, T, object]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        entry = self._entries.get(id(loop))
        if entry is not None and entry[0]() is loop and self._usable(entry[1]):
            return entry[1]
        stale = self._forget_finished_loops()
        value = self._make()
        keeper = self._keeper(id(loop), value)
        # registered before anything awaits, so concurrent callers on this loop share the value
        self._entries[id(loop)] = (weakref.ref(loop), value, keeper)
        await keeper.__anext__()  # runs to its yield without suspending; the loop now tracks it
        for old in stale:
            await self._close_quietly(old)
        return value

    async def close_all(self) -> None:
        """Close and forget every loop's value (those of other loops as far as still possible)."""
        entries, self._entries = list(self._entries.values()), {}
        for _, value, _ in entries:
            await self._close_quietly(value)

    def forget(self, value: T) -> None:
        """Drop `value` from the loop it belongs to (it was closed elsewhere)."""
        for key, (_, held, _) in list(self._entries.items()):
            if held is value:
                self._entries.pop(key, None)

    async def _keeper(self, key: int, value: T):
        try:
            yield
        finally:
            entry = self._entries.get(key)
            if entry is not None and entry[1] is value:
                self._entries.pop(key, None)
            await self._close_quietly(value)

    def _forget_finished_loops(self) -> list[T]:
        stale = []
        for key, (loop_ref, value, _) in list(self._entries.items()):
            loop = loop_ref()
            if loop is None or loop.is_closed():
                self._entries.pop(key, None)
                stale.append(value)
        return stale

    async def _close_quietly(self, value: T) -> None:
        if self._close is None:
            return
        try:
            await self._close(value)
        except RuntimeError:  # made on a loop that is gone: nothing left to release from here
            pass
