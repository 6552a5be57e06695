"""One model served by several replicas: each request goes to the least-busy replica that is up,
at most the per-server bound in flight on each. A replica that fails (connection refused or
dropped, timeout, HTTP 5xx) is marked down and the request goes to another one at once; a
down replica is probed (GET /models) before it serves again, after 1 s, then 2, 4... up to 30 s;
a request that finds every replica down before it has tried any probes them at once.

Health is known process-wide (a dead server is dead for every event loop); the in-flight counts
are per event loop, like the per-server bounds of tools/llm.py. Hand-written: the routing sits
inside magicore's own aiohttp transport (agents/transport.py) and its retry rules; the library
that balances over OpenAI-compatible servers (LiteLLM's Router) brings its own client and the
per-request CPU cost that transport exists to avoid.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass

from magicore.agents import transport
from magicore.tools.loop_local import LoopLocal

log = logging.getLogger("magicore.replicas")

PROBE_SECONDS = 1.0  # first probe of a replica marked down, doubling after each failed probe
PROBE_MAX_SECONDS = 30.0


@dataclass(eq=False)
class Replica:
    url: str
    up: bool = True
    failures: int = 0  # consecutive failures (requests or probes)
    next_probe: float = 0.0  # time.monotonic() from which a down replica may be probed
    sent: int = 0  # requests sent; breaks ties between equally busy replicas
    last_error: str = ""


class _LoopState:
    """One event loop's view: requests in flight per replica, and a wake-up for waiters."""

    def __init__(self) -> None:
        self.in_flight: Counter[str] = Counter()
        self.changed = asyncio.Event()
        self.probes: set[asyncio.Task] = set()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class ReplicaPool:
    """The replicas of one model and their health. `bound`: requests in flight per replica."""

    def __init__(self, urls: list[str], bound: int, *, probe_seconds: float = PROBE_SECONDS):
        self.replicas = [Replica(url) for url in urls]
        self.bound = max(1, int(bound))
        self.probe_seconds = probe_seconds
        self._loops: LoopLocal[_LoopState] = LoopLocal(_LoopState)

    def status(self) -> dict[str, bool]:
        """{url: up} for every replica."""
        return {r.url: r.up for r in self.replicas}

    async def in_flight(self) -> dict[str, int]:
        state = await self._loops.get()
        return {r.url: state.in_flight[r.url] for r in self.replicas}

    async def acquire(self, avoid: set[str] = frozenset()) -> Replica | None:
        """The least-busy replica that is up and not in `avoid`, once it has room under the
        bound; None when no such replica is up (all down, or all tried already)."""
        state = await self._loops.get()
        while True:
            self._start_due_probes(state)
            candidates = [r for r in self.replicas if r.up and r.url not in avoid]
            if not candidates:
                return None
            free = [r for r in candidates if state.in_flight[r.url] < self.bound]
            if free:
                chosen = min(free, key=lambda r: (state.in_flight[r.url], r.sent))
                state.in_flight[chosen.url] += 1
                chosen.sent += 1
                return chosen
            changed = state.changed
            try:  # woken by a release or a replica coming back; also to start due probes
                await asyncio.wait_for(changed.wait(), timeout=self.probe_seconds)
            except asyncio.TimeoutError:
                pass

    async def release(self, replica: Replica) -> None:
        self.release_in(await self._loops.get(), replica)

    def release_in(self, state: _LoopState, replica: Replica) -> None:
        """Release without awaiting (safe in a `finally` of a cancelled request)."""
        state.in_flight[replica.url] -= 1
        state.notify()

    async def loop_state(self) -> _LoopState:
        return await self._loops.get()

    async def mark_down(self, replica: Replica, error: BaseException) -> None:
        replica.last_error = _describe(error)
        if not replica.up:
            return
        replica.up = False
        replica.failures += 1
        replica.next_probe = time.monotonic() + self._interval(replica)
        log.warning("replica %s marked down (%s); its requests go to the others", replica.url, replica.last_error)
        (await self._loops.get()).notify()

    def mark_ok(self, replica: Replica) -> None:
        replica.failures = 0

    async def probe_down(self) -> None:
        """Probe every down replica now, and wait for the answers."""
        state = await self._loops.get()
        down = [r for r in self.replicas if not r.up]
        await asyncio.gather(*(self._probe(r, state) for r in down))

    def _interval(self, replica: Replica) -> float:
        return min(self.probe_seconds * 2 ** max(0, replica.failures - 1), PROBE_MAX_SECONDS)

    def _start_due_probes(self, state: _LoopState) -> None:
        now = time.monotonic()
        for replica in self.replicas:
            if not replica.up and now >= replica.next_probe:
                replica.next_probe = now + self._interval(replica)  # claimed: one probe at a time
                task = asyncio.get_running_loop().create_task(self._probe(replica, state))
                state.probes.add(task)
                task.add_done_callback(state.probes.discard)

    async def _probe(self, replica: Replica, state: _LoopState) -> None:
        import aiohttp

        session = await transport._shared_session()
        timeout = aiohttp.ClientTimeout(total=min(5.0, max(1.0, self.probe_seconds)))
        try:
            async with session.get(f"{replica.url}/models", timeout=timeout) as response:
                ok = response.status < 400
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            ok = False
        if replica.up:
            return
        if ok:
            replica.up, replica.failures = True, 0
            log.warning("replica %s answers again; back in use", replica.url)
            state.notify()
        else:
            replica.failures += 1
            replica.next_probe = time.monotonic() + self._interval(replica)


def _describe(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    return f"HTTP {status}" if status else type(error).__name__


#: (urls, bound) -> its pool, for the life of the process
_pools: dict[tuple, ReplicaPool] = {}


def pool_for(model) -> ReplicaPool:
    """The replica pool of a chat model made by `chat_model` from a spec with several URLs."""
    metadata = model.metadata or {}
    bound = int(metadata.get("magicore_replica_concurrency") or metadata.get("magicore_max_concurrency") or 8)
    key = (tuple(model.replica_urls), bound)
    if key not in _pools:
        _pools[key] = ReplicaPool(list(model.replica_urls), bound)
    return _pools[key]


async def post_to_replicas(model, payload: dict) -> dict:
    """POST /chat/completions to the model's replicas and return the JSON body.

    A replica failure sends the request to the next replica at once; when every replica that
    is up has failed it (or none is up), the down ones are probed after the transport's
    backoff, and that counts as one of the model's `max_retries` retries. 408/409/429 (busy,
    not broken) are retried with backoff as in agents/transport.py. Errors are the openai SDK's.
    """
    import aiohttp

    pool = pool_for(model)
    state = await pool.loop_state()
    body, headers, timeout, attempts = transport.request_parts(model, payload)
    session = await transport._shared_session()
    rounds, avoid, tried = 0, set(), False
    last: BaseException | None = None
    while True:
        replica = await pool.acquire(avoid)
        if replica is None and not tried:
            # marked down before this request tried any (by an earlier run, maybe before the
            # servers started): look at them now rather than fail without a request
            tried = True
            await pool.probe_down()
            continue
        if replica is None:  # every replica that is up failed this request, or none is up
            rounds += 1
            if rounds >= attempts:
                raise last or transport.connection_error(f"{pool.replicas[0].url}/chat/completions",
                                                         RuntimeError("no replica of the model is up"))  # fmt: skip
            await asyncio.sleep(transport.retry_delay(rounds - 1))
            await pool.probe_down()
            avoid = set()
            continue
        tried = True
        url = f"{replica.url}/chat/completions"
        status = 0
        try:
            status, raw, response_headers = await transport.post_once(session, url, body, headers, timeout)
        except asyncio.TimeoutError:
            error: BaseException = transport.timeout_error(url)
        except aiohttp.ClientError as e:
            error = transport.connection_error(url, e)
        else:
            if status < 400:
                pool.mark_ok(replica)
                return json.loads(raw)
            error = transport.status_error(model, url, status, raw, response_headers)
        finally:
            pool.release_in(state, replica)
        if 400 <= status < 500:  # the request, not the replica: as a single server would
            rounds += 1
            if status not in transport.RETRY_STATUS or rounds >= attempts:
                raise error
            await asyncio.sleep(transport.retry_delay(rounds - 1))
            continue
        await pool.mark_down(replica, error)
        avoid.add(replica.url)
        last = error
