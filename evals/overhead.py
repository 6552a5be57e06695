"""The overhead benchmark: each method's wall time against the model's critical path.

A mock OpenAI-compatible server (evals/mock_server.py, in its own process so that it does not
share this process's interpreter lock) answers every request after a fixed latency plus
reply tokens / token rate. The critical path is what the calls would take if orchestration
cost nothing: the method's sequential model "waves" (solve; review, refine per round; a
Self-Refine feedback or revision; a scoring when the reward calls the model), each taking one
call's time, with problems scheduled on `concurrency` slots. Overhead = (wall - critical
path) / wall. A second critical path also charges the ceiling of the client's bound on
requests in flight per server (tools/inflight.py, agents/backends.py), to show how much of
the gap it is; each case reports the bound it ended with and the most requests in flight.

    magicore bench-overhead --problems 16 --latency 0.2     (ui/overhead_command.py)
"""

from __future__ import annotations

import asyncio
import heapq
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from magicore.graphs.build import build_graph, normalize_method
from magicore.graphs.config import MethodConfig
from magicore.graphs.result import RunResult
from magicore.graphs.state import Calibration
from magicore.tools import llm

#: mu far above any R (at most 2): cond1 fails, so MAgICoRe refines whenever the vote is spread
#: (k >= 4 distinct answers), and every problem runs the same T rounds.
ALWAYS_HARD = Calibration(mu=2.0, sigma=0.1, source="overhead-benchmark")


def mock_reply(body: dict, index: int) -> str:
    """Every reply states a different answer (so the vote stays spread and MAgICoRe refines) in
    the same number of words (so every call takes the same time); judge queries get "Yes"."""
    if body.get("max_tokens") == 1:
        return "Yes"
    return f"Step 1: 40 + 2 = {index}\nThe answer is \\boxed{{{index}}}."


REPLY_WORDS = len(mock_reply({}, 0).split())


def _serve(conn, latency: float, tokens_per_second: float | None, honour_n: bool) -> None:
    from magicore.evals.mock_server import MockServer, MockSettings

    settings = MockSettings(latency=latency, tokens_per_second=tokens_per_second, honour_n=honour_n,
                            reply=mock_reply)  # fmt: skip
    with MockServer(settings) as server:
        conn.send(server.base_url)
        conn.recv()  # serve until told to stop


class MockProcess:
    """The mock server in a child process; `base_url` once started."""

    def __init__(self, latency: float, tokens_per_second: float | None, honour_n: bool = True):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, latency, tokens_per_second, honour_n), daemon=True)
        self.base_url = ""

    def __enter__(self) -> MockProcess:
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("the mock server process did not start")
        self.base_url = self._conn.recv()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


@dataclass
class Case:
    """One measured configuration."""

    label: str
    method: str
    k: int
    problems: int
    concurrency: int
    wall: float
    critical: float  # the model's critical path (unbounded parallelism)
    bounded: float  # the same, charging the client's in-flight bound per server
    requests: int
    llm_calls: int
    waves: int  # per problem (the first problem's)
    rounds: float
    http_requests: int = 0  # HTTP requests sent: fewer than `requests` where calls went in batches
    cpu: float = 0.0  # this process's CPU seconds (the orchestration, HTTP client, parsing)
    child_cpu: float = 0.0  # CPU seconds of subprocesses it ran meanwhile (the code sandbox)
    bound: int = 0  # the client's in-flight bound to the mock at the end of the case
    peak: int = 0  # the most requests in flight at once during the case
    floor: float | None = None  # plain aiohttp making the same requests in the same waves
    wave_requests: list[int] = field(default_factory=list)  # requests per wave, all problems together
    solve_n: int = 1  # n of the Solver's requests

    @property
    def overhead(self) -> float:
        """Share of wall time not explained by the model's critical path."""
        return (self.wall - self.critical) / self.wall if self.wall else 0.0

    @property
    def ratio(self) -> float:
        return self.wall / self.critical if self.critical else math.inf


@dataclass
class Timing:
    latency: float
    tokens_per_second: float | None
    inflight_bound: int

    def call(self, role: str) -> float:
        words = 1 if role == "reward" else REPLY_WORDS
        return self.latency + (words / self.tokens_per_second if self.tokens_per_second else 0.0)


def waves_of(method: str, result: RunResult) -> list[tuple[str, int]]:
    """The sequential model waves of one run: (role, requests in the wave), from its usage."""
    usage = result.usage_by_role

    def get(role: str, key: str) -> int:
        return int(usage.get(role, {}).get(key, 0))

    waves = [("solver", get("solver", "requests"))]
    scorings = 0
    if method == "self-refine":
        waves += [("reviewer", 1)] * get("reviewer", "requests") + [("refiner", 1)] * get("refiner", "requests")
    elif method == "magicore":
        r = result.rounds
        if r:
            waves += [("reviewer", math.ceil(get("reviewer", "requests") / r))] * r
            waves += [("refiner", math.ceil(get("refiner", "requests") / r))] * r
        scorings = 1 + r
    elif method == "bok":
        scorings = 1
    if scorings and get("reward", "requests"):
        waves += [("reward", math.ceil(get("reward", "requests") / scorings))] * scorings
    return waves


def makespan(durations: Sequence[float], slots: int) -> float:
    """Problems taken in order by `slots` workers (an asyncio.Semaphore is first come, first
    served): when the last one ends."""
    free = [0.0] * max(1, slots)
    end = 0.0
    for d in durations:
        start = heapq.heappop(free)
        end = max(end, start + d)
        heapq.heappush(free, start + d)
    return end


def critical_paths(method: str, results: Sequence[RunResult], concurrency: int, timing: Timing) -> tuple[float, float, int]:
    inflight = min(concurrency, len(results))
    ideal, bounded = [], []
    for result in results:
        waves = waves_of(method, result)
        ideal.append(sum(timing.call(role) for role, _ in waves))
        bounded.append(sum(timing.call(role) * math.ceil(max(1, n) * inflight / timing.inflight_bound)
                           for role, n in waves))  # fmt: skip
    return makespan(ideal, concurrency), makespan(bounded, concurrency), len(waves_of(method, results[0]))


async def run_case(model, method: str, *, k: int, problems: int, concurrency: int, rounds: int, reward: str,
                   timing: Timing, label: str = "") -> Case:  # fmt: skip
    from magicore.graphs.api import asolve

    method = normalize_method(method)
    config = MethodConfig(k=k, rounds=rounds, max_tokens=64)
    graph = build_graph(method, model=model, reward=reward if method in ("magicore", "bok") else None, config=config)
    limit = asyncio.Semaphore(concurrency)
    calibration = ALWAYS_HARD if method == "magicore" else None

    async def one(i: int) -> RunResult:
        async with limit:
            return await asolve(f"Problem {i}: what is 40 + 2?", method=method, model=model, graph=graph,
                                calibration=calibration)  # fmt: skip

    limiter = await llm.limiter(model)
    limiter.peak = limiter.in_flight  # this case's peak from here
    batching = await _coalescer_stats(model)
    cpu, child = time.process_time(), _children_cpu()
    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(problems)))
    wall = time.perf_counter() - started
    cpu, child = time.process_time() - cpu, _children_cpu() - child
    critical, bounded, waves = critical_paths(method, results, concurrency, timing)
    per_problem = [waves_of(method, r) for r in results]
    depth = max(len(w) for w in per_problem)
    wave_requests = [sum(w[i][1] for w in per_problem if i < len(w)) for i in range(depth)]
    solve_n = k if all(w[0][1] == 1 for w in per_problem) else 1
    requests = sum(r.requests for r in results)
    after = await _coalescer_stats(model)
    http = requests - (after.saved - batching.saved)
    return Case(label or method, method, k, problems, concurrency, wall, critical, bounded, http_requests=http,
                requests=requests, llm_calls=sum(r.llm_calls for r in results),
                waves=waves, rounds=sum(r.rounds for r in results) / len(results), cpu=cpu,
                child_cpu=child, bound=limiter.limit, peak=limiter.peak, wave_requests=wave_requests,
                solve_n=solve_n)  # fmt: skip


async def _coalescer_stats(model):
    from dataclasses import replace

    from magicore.agents.coalesce import Stats, coalescer

    return replace((await coalescer(model)).stats) if getattr(model, "coalesce", False) else Stats()


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def raw_floor(base_url: str, *, k: int, requests: int) -> float:
    """`requests` concurrent n=k requests with plain aiohttp: the server and loopback's own cost."""
    return await raw_waves(base_url, [requests], solve_n=k)


async def raw_waves(base_url: str, wave_requests: Sequence[int], *, solve_n: int) -> float:
    """The same requests in the same waves with plain aiohttp and nothing else (the first wave's
    requests ask for `solve_n` choices, the others for one): the floor the mock server, loopback
    and an HTTP client allow for a case whose problems all run at once."""
    import aiohttp

    def body(n: int) -> dict:
        return {"model": "mock-model", "n": n, "max_tokens": 64,
                "messages": [{"role": "user", "content": "Problem: what is 40 + 2?"}]}  # fmt: skip

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(payload: dict) -> None:
            async with session.post(f"{base_url}/chat/completions", json=payload) as response:
                await response.json()

        await one(body(1))  # connect once
        started = time.perf_counter()
        for i, count in enumerate(wave_requests):
            payload = body(solve_n if i == 0 else 1)
            await asyncio.gather(*(one(payload) for _ in range(count)))
        return time.perf_counter() - started


@dataclass
class OverheadSettings:
    latency: float = 0.2
    tokens_per_second: float | None = 500.0
    honour_n: bool = True
    problems: int = 16
    concurrency: int = 16
    k: int = 8
    rounds: int = 3
    reward: str = "const:0.5"
    methods: list[str] = field(default_factory=lambda: ["magicore", "sc", "bok", "self-refine"])
    sweep_methods: list[str] = field(default_factory=lambda: ["sc", "magicore"])
    k_values: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    concurrency_values: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    sweep_k: int = 8  # k during the concurrency sweep
    profile: str | None = None  # a method whose methods-table run is profiled with cProfile
    inflight: int | None = None  # the client's bound on requests in flight (None: the server kind's)
    provider: str = "vllm"  # the kind of server the mock stands for (its in-flight bound)
    coalesce: bool = True  # batch concurrent calls where the kind's server has a batch endpoint (vllm)


def format_cases(title: str, cases: Sequence[Case], floors: dict[int, float] | None = None) -> str:
    lines = [f"### {title}", "",
             "| case | method | k | problems | at a time | waves | wall s | critical path s | overhead | "
             "wall / critical | bounded path s | requests | HTTP requests | in-flight bound (peak) | "
             "CPU ms / request | sandbox CPU s | raw floor s | wall / floor |",
             "|" + " --- |" * 18]  # fmt: skip
    for c in cases:
        lines.append(
            f"| {c.label} | {c.method} | {c.k} | {c.problems} | {c.concurrency} | {c.waves} | {c.wall:.3f} "
            f"| {c.critical:.3f} | {100 * c.overhead:.1f}% | {c.ratio:.2f}x | {c.bounded:.3f} | {c.requests} | {c.http_requests} "
            f"| {c.bound} ({c.peak}) | {1000 * c.cpu / max(1, c.requests):.2f} | {c.child_cpu:.2f} "
            + (f"| {c.floor:.3f} | {c.wall / c.floor:.2f}x |" if c.floor else "| - | - |")
        )
    if floors:
        lines.append("")
        lines.append("Plain aiohttp, the same number of concurrent n=k requests without magicore (the mock "
                     "server's and loopback's own cost): " + ", ".join(
                         f"{n} at once {wall:.3f} s" for n, wall in sorted(floors.items())))  # fmt: skip
    return "\n".join(lines)


async def run_all(s: OverheadSettings, base_url: str, emit: Callable[[str], None]) -> dict[str, list[Case]]:
    from magicore.agents.backends import chat_model, parse_spec

    model = chat_model(parse_spec(f"{s.provider}:mock-model@{base_url}"), timeout=600.0, max_retries=0,
                       max_concurrency=s.inflight, coalesce=None if s.coalesce else False)  # fmt: skip
    bound = llm.server_bound(model)
    timing = Timing(s.latency, s.tokens_per_second, bound.ceiling)
    emit(f"mock server: latency {s.latency * 1000:.0f} ms per call, "
         f"{s.tokens_per_second or 'unlimited'} tokens/s, {REPLY_WORDS}-token replies (one call = "
         f"{timing.call('solver') * 1000:.0f} ms), n {'honoured' if s.honour_n else 'ignored'}; "
         f"reward {s.reward}; client in-flight bound for a {s.provider} server: {bound.start} "
         f"(halved on 429/503, then back up to {bound.ceiling}); "
         f"{'concurrent calls batched (/chat/completions/batch)' if getattr(model, 'coalesce', False) else 'one HTTP request per call'}; "
         f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start\n")  # fmt: skip
    # warm up: imports, the HTTP connection, the n-support probe
    await run_case(model, "sc", k=2, problems=1, concurrency=1, rounds=0, reward=s.reward, timing=timing)
    out: dict[str, list[Case]] = {"methods": [], "k": [], "concurrency": []}

    for method in s.methods:
        if s.profile and normalize_method(s.profile) == normalize_method(method):
            case = await _profiled(model, method, s, timing, emit)
        else:
            case = await run_case(model, method, k=s.k, problems=s.problems, concurrency=s.concurrency,
                                  rounds=s.rounds, reward=s.reward, timing=timing)  # fmt: skip
        if case.concurrency >= case.problems:  # all at once: the same waves are the floor
            case.floor = await raw_waves(base_url, case.wave_requests, solve_n=case.solve_n)
        out["methods"].append(case)
    title = (f"Methods: {s.problems} problems, {s.concurrency} at a time, k={s.k}, T={s.rounds} "
             f"(Self-Refine: {MethodConfig().self_refine_rounds})")  # fmt: skip
    emit(format_cases(title, out["methods"]) + "\n")

    for method in s.sweep_methods:
        for k in s.k_values:
            out["k"].append(await run_case(model, method, k=k, problems=1, concurrency=1, rounds=s.rounds,
                                           reward=s.reward, timing=timing, label=f"k={k}"))  # fmt: skip
    if out["k"]:
        emit(format_cases("Wall time against k (one problem)", out["k"]) + "\n")

    floors = {}
    for method in s.sweep_methods:
        for c in s.concurrency_values:
            out["concurrency"].append(await run_case(model, method, k=s.sweep_k, problems=c, concurrency=c,
                                                     rounds=s.rounds, reward=s.reward, timing=timing,
                                                     label=f"{c} at once"))  # fmt: skip
    for c in s.concurrency_values:
        floors[c] = await raw_floor(base_url, k=s.sweep_k, requests=c)
    if out["concurrency"]:
        emit(format_cases(f"Wall time against concurrent problems (k={s.sweep_k})", out["concurrency"], floors))
    return out


async def _profiled(model, method, s: OverheadSettings, timing: Timing, emit) -> Case:
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        case = await run_case(model, method, k=s.k, problems=s.problems, concurrency=s.concurrency,
                              rounds=s.rounds, reward=s.reward, timing=timing)  # fmt: skip
    finally:
        profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(25)
    emit(f"cProfile of {method} ({case.wall:.2f} s wall), top functions by own time:\n"
         + _trim_profile(buffer.getvalue()))  # fmt: skip
    return case


def _trim_profile(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(lines[start:]) + "\n"


def run(s: OverheadSettings, emit: Callable[[str], None] = print) -> dict[str, list[Case]]:
    with MockProcess(s.latency, s.tokens_per_second, s.honour_n) as server:
        return asyncio.run(run_all(s, server.base_url, emit))
