"""How many requests magicore keeps in flight to one server: a bound that backs off when the
server pushes back.

A `Limiter` starts at the bound of the server's kind (agents/backends.py). HTTP 429 or 503
halves it, at most once per round trip (only a request sent at the current bound can lower it
again). While requests wait for a slot and come back fine, it grows by one per answered request
(a doubling per round trip, TCP's slow start) back up to its ceiling, which for every server
kind is where it started. Timeouts and refused connections do not lower it: a server that is
down or restarting says nothing about how much it can take, and halving on each of a burst of
refusals would take the bound to 1. `fit_open_files` keeps a bound within the process's
open-file limit.

Hand-written: PyPI's asyncio AIMD limiters (aimd-limiter, ace-concurrency) are 0.1 releases
with one maintainer, and none reports its bound or takes a signal from inside a request's
retries, which is where the transport sees a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

try:
    import resource
except ImportError:  # not on Windows: no limit to check there
    resource = None  # type: ignore[assignment]

log = logging.getLogger("magicore.inflight")

#: File descriptors left for everything but requests: sandboxes' pipes, the model server's, logs.
FD_RESERVE = 128


@dataclass(frozen=True)
class Bound:
    """A server's in-flight bound: where it starts, how far it may grow, whether it adapts."""

    start: int
    ceiling: int
    adaptive: bool = True

    def __post_init__(self) -> None:
        if self.start < 1:
            raise ValueError(f"the in-flight bound must be at least 1, got {self.start}")
        if self.ceiling < self.start:
            raise ValueError(f"the in-flight ceiling ({self.ceiling}) is below the starting bound ({self.start})")

    @classmethod
    def fixed(cls, value: int) -> Bound:
        return cls(value, value, adaptive=False)


def fit_open_files(bound: Bound) -> Bound:
    """The bound, made to fit the process's open-file limit (RLIMIT_NOFILE).

    Each request in flight holds a socket. When the bound's ceiling and `FD_RESERVE` do not fit
    the soft limit, the soft limit is raised towards the hard one (as servers do at start-up);
    when even the hard limit is too low, the bound is lowered to what fits and a warning says
    so, instead of requests failing with "Too many open files" mid-run.
    """
    if resource is None:
        return bound
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = bound.ceiling + FD_RESERVE
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return bound
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if needed <= soft:
        return bound
    room = max(1, soft - FD_RESERVE)
    log.warning("%d requests in flight would not fit this process's open-file limit (%d; raise it with "
                "`ulimit -n`): keeping at most %d in flight", bound.ceiling, soft, room)  # fmt: skip
    return Bound(min(bound.start, room), room, adaptive=bound.adaptive)


class Limiter:
    """An asyncio semaphore whose size moves between 1 and `bound.ceiling` (see module docstring).

    `async with limiter.slot():` holds one slot for a request; `congested()` inside it reports
    that the server pushed back (the transport calls it on a 429 or 503 it retries).
    """

    def __init__(self, bound: Bound, label: str = ""):
        self.bound, self.label = bound, label
        self.limit = bound.start
        self.in_flight = 0
        self.peak = 0  # most requests in flight at once
        self.backoffs = 0  # times the bound was halved
        self.requests = 0
        self._epoch = 0  # bumped by every halving: requests sent before it cannot halve again
        self._waiters: deque[asyncio.Future] = deque()

    # slots

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch the request was sent in."""
        if self.in_flight < self.limit and not self._waiters:
            self._take()
            return self._epoch
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled: give it back
                self.in_flight -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        return self._epoch

    def release(self, epoch: int, *, ok: bool, congested: bool = False) -> None:
        """Give a slot back; `ok`: the server answered; `congested`: it pushed back."""
        self.in_flight -= 1
        if congested:
            self._halve(epoch)
        elif ok and self.bound.adaptive and self._waiters:  # grow only while requests wait for a slot
            self._grow()
        self._wake()

    def congested(self, epoch: int) -> None:
        self._halve(epoch)

    @contextlib.asynccontextmanager
    async def slot(self):
        epoch = await self.acquire()
        outcome = _Outcome(self, epoch)
        token = _current.set(outcome)
        try:
            yield outcome
        except BaseException as error:
            self.release(epoch, ok=False, congested=outcome.pushed_back or is_congestion(error))
            raise
        else:
            self.release(epoch, ok=True, congested=outcome.pushed_back)
        finally:
            _current.reset(token)

    # adaptation

    def _take(self) -> None:
        self.in_flight += 1
        self.requests += 1
        self.peak = max(self.peak, self.in_flight)

    def _grow(self) -> None:
        if self.limit < self.bound.ceiling:
            self.limit += 1

    def _halve(self, epoch: int) -> None:
        if not self.bound.adaptive or epoch != self._epoch:
            return  # a fixed bound, or this round trip has already been answered by a halving
        self._epoch += 1
        self.limit = max(1, self.limit // 2)
        self.backoffs += 1

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)

    def report(self) -> dict[str, Any]:
        """What `--json`, traces and the overhead benchmark show about this bound."""
        return {"server": self.label, "bound": self.limit, "start": self.bound.start, "ceiling": self.bound.ceiling,
                "adaptive": self.bound.adaptive, "peak": self.peak, "backoffs": self.backoffs}  # fmt: skip


@dataclass
class _Outcome:
    limiter: Limiter
    epoch: int
    pushed_back: bool = False


#: The slot the running request holds (set by `Limiter.slot`), for signals from the transport.
_current: contextvars.ContextVar[_Outcome | None] = contextvars.ContextVar("magicore_inflight", default=None)
#: The limiters used inside the enclosing `track` scopes.
_used: contextvars.ContextVar[tuple[set, ...]] = contextvars.ContextVar("magicore_inflight_used", default=())

#: HTTP statuses that mean "too much": rate limited, or overloaded.
CONGESTION_STATUS = frozenset({429, 503})


def push_back(status: int) -> None:
    """The server pushed back on the running request (a 429 or 503 the transport retries): halve
    the bound of the server it went to, once per round trip."""
    outcome = _current.get()
    if outcome is not None and status in CONGESTION_STATUS:
        outcome.pushed_back = True
        outcome.limiter.congested(outcome.epoch)


def is_congestion(error: BaseException | None) -> bool:
    """Whether a failed request's error, or the error it was raised from (tools/llm.py wraps
    every backend's error in a ModelError), is the server saying it is overloaded: HTTP 429 or
    503."""
    seen = 0
    while error is not None and seen < 4:
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            return status in CONGESTION_STATUS
        error, seen = error.__cause__, seen + 1
    return False


def note(limiter: Limiter) -> None:
    for used in _used.get():
        used.add(limiter)


@contextlib.contextmanager
def track() -> Iterator[set[Limiter]]:
    """The limiters every request made inside the block went through (tasks it spawns included)."""
    used: set[Limiter] = set()
    token = _used.set(_used.get() + (used,))
    try:
        yield used
    finally:
        _used.reset(token)


def reports(limiters: set[Limiter]) -> list[dict[str, Any]]:
    return sorted((limiter.report() for limiter in limiters), key=lambda r: r["server"])
