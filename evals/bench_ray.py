"""`magicore bench --engine ray`: the benchmark spread over Ray workers (evals/ray_worker.py).

It writes what `run_bench` (evals/bench.py) writes for the same settings and seed: the same
paired configurations (METHOD@K), records, samples and calibration files. The driver, this
process, owns the store: it alone writes samples.jsonl, scores.jsonl, records, calibration files
and MAgICoRe's paused states (checkpoints.sqlite, the same threads the local engine uses), so a
rerun with either engine resumes and no problem is counted twice. Workers get problems, each
worker a few at a time (--concurrency): phase 0 samples each problem's missing chains there and
the driver stores them; then every configuration sends each problem with its stored chains, and
the worker replays them and returns the record.

MAgICoRe with the batch calibration runs as in one process: phase 1 (solve and score, paused
before "route") on the workers; each paused state is saved here; mu and sigma come from every
problem's first chain, in problem order, before any problem is routed; then phase 2 on the
workers from the saved states. A worker that dies (its process killed, its node lost) fails its
calls with a Ray actor error: its problems go back to the queue for the other workers, and a new
worker takes its place. Imports graphs, agents, tools; never ui.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from magicore.evals.bench import BenchSettings, Models, open_run, problems_to_run
from magicore.evals.grading import graded
from magicore.evals.bench_store import JsonlLog, load_results, make_record
from magicore.evals.datasets import Problem
from magicore.evals.paired import SampleStore, ScoreLog
from magicore.evals.progress import ProgressBar
from magicore.evals.ray_worker import (
    PAUSE_BEFORE,
    BenchWorker,
    WorkerSpecs,
    export_checkpoint,
    import_checkpoint,
    thread_config,
)
from magicore.tools.errors import InputError, MagicoreError, SetupError

#: A problem whose worker died this many times is recorded as an error, not tried again.
MAX_DEATHS_PER_PROBLEM = 3
#: Environment a worker needs from the driver's (model keys, request bounds).
FORWARDED_ENV = ("OPENAI_API_KEY",)
WORKER_PREFIX = "magicore-bench-worker"


def _ray():
    try:
        import ray
    except ImportError:
        raise SetupError("the Ray engine needs Ray: pip install 'magicore[ray]'") from None
    return ray


def start_ray(address: str | None, log: Callable[[str], None]) -> bool:
    """Connect to the cluster at `address` ("auto": the one `ray start` began on this machine),
    or start a new local Ray instance; True if started here."""
    ray = _ray()
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    env = {k: v for k, v in os.environ.items() if k.startswith("MAGICORE_") or k in FORWARDED_ENV}
    try:
        ray.init(address=address or "local", runtime_env={"env_vars": env} if env else None, logging_level="WARNING",
                 log_to_driver=False, configure_logging=True)  # fmt: skip
    except ConnectionError as error:
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            "; a cluster with token authentication also needs RAY_AUTH_MODE=token and its token here (docs/scale.md)")
        raise InputError(f"cannot connect to the Ray cluster at {address}: {error}{hint}") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    log(f"ray: {len(nodes)} node(s), {int(ray.cluster_resources().get('CPU', 0))} CPU(s)")
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at HOST:PORT."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray://... : Ray's own rules
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise InputError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


class WorkerPool:
    """`size` workers spread over the cluster's nodes; a dead one is replaced on demand."""

    def __init__(self, specs: WorkerSpecs, config_values: dict, size: int, log: Callable[[str], None]):
        ray = _ray()
        # One CPU per worker while the cluster has that many, else an equal share: reserving
        # CPUs is what makes Ray place workers on every node (SPREAD alone with no resources
        # may pack them on one), and a share keeps more workers than CPUs from waiting forever.
        # A worker that replaces a dead one reserves none: the CPU it would wait for may have
        # gone with the dead worker's node.
        total = float(ray.cluster_resources().get("CPU", 1.0))
        self.cpus = min(1.0, int(100 * total / size) / 100) or 0.01
        self._remote = ray.remote(max_restarts=0, scheduling_strategy="SPREAD")(BenchWorker)
        self.specs, self.config_values, self.log = specs, config_values, log
        self.actors: list = []
        self.generation = [0] * size
        self.replaced = 0
        self.max_replacements = max(3, 2 * size)
        for slot in range(size):
            self.actors.append(self._spawn(slot))

    async def ready(self) -> tuple[float, int]:
        """Wait until every worker has started (imported magicore, built its models): the seconds
        it took and the number of nodes they run on."""
        ray = _ray()
        started = time.perf_counter()
        try:
            nodes = await asyncio.gather(*(asyncio.wrap_future(a.start.remote().future()) for a in self.actors))
        except ray.exceptions.RayError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise MagicoreError(f"the Ray workers could not start ({first}); is magicore installed on every "
                                "node, in the same Python version?") from None  # fmt: skip
        return time.perf_counter() - started, len(set(nodes))

    def _spawn(self, slot: int):
        name = f"{WORKER_PREFIX}-{slot}" + (f".{self.generation[slot]}" if self.generation[slot] else "")
        cpus = 0 if self.generation[slot] else self.cpus
        return self._remote.options(name=name, num_cpus=cpus).remote(self.specs, self.config_values)

    def replace(self, slot: int, dead) -> None:
        """Put a new worker in `slot` unless that happened already for this dead one."""
        if self.actors[slot] is not dead:
            return
        self.replaced += 1
        if self.replaced > self.max_replacements:
            raise MagicoreError(f"Ray workers keep dying ({self.replaced} so far); see the Ray logs "
                                "(ray logs, or /tmp/ray/session_latest/logs)")  # fmt: skip
        self.generation[slot] += 1
        self.actors[slot] = self._spawn(slot)

    def shutdown(self) -> None:
        ray = _ray()
        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone
                pass


async def dispatch(
    pool: WorkerPool,
    items: Sequence[Problem],
    call: Callable[[object, Problem], object],
    on_result: Callable[[Problem, object], Awaitable[None]],
    on_lost: Callable[[Problem, str], Awaitable[None]],
    per_worker: int,
) -> None:
    """Run `call(worker, problem)` (a Ray ObjectRef) for every problem, at most `per_worker` in
    flight on each worker. A problem whose worker died goes back to the front of the queue."""
    ray = _ray()
    queue = deque(items)
    in_flight: dict[asyncio.Future, tuple[int, object, Problem]] = {}
    load: Counter[int] = Counter()
    deaths: Counter[str] = Counter()
    while queue or in_flight:
        while queue:
            slot = min(range(len(pool.actors)), key=lambda s: load[s])
            if load[slot] >= per_worker:
                break
            problem = queue.popleft()
            actor = pool.actors[slot]
            future = asyncio.wrap_future(call(actor, problem).future())
            in_flight[future] = (slot, actor, problem)
            load[slot] += 1
        done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            if future not in in_flight:  # a call on a worker found dead earlier in this loop
                continue
            slot, actor, problem = in_flight.pop(future)
            load[slot] -= 1
            try:
                value = future.result()
            except ray.exceptions.RayActorError as error:
                # every call still on this worker is lost with it: take them all back at once
                lost = [problem]
                for other, (other_slot, other_actor, other_problem) in list(in_flight.items()):
                    if other_actor is actor:
                        del in_flight[other]
                        other.add_done_callback(lambda f: f.exception())  # its error is known
                        load[other_slot] -= 1
                        lost.append(other_problem)
                pool.replace(slot, actor)
                pool.log(f"ray: worker {slot} died with {len(lost)} problem(s) in flight "
                         f"({', '.join(p.id for p in lost)}); they run again on the other workers")  # fmt: skip
                for gone in reversed(lost):
                    deaths[gone.id] += 1
                    if deaths[gone.id] >= MAX_DEATHS_PER_PROBLEM:
                        await on_lost(gone, f"the Ray worker running it died {deaths[gone.id]} times: "
                                            f"{type(error).__name__}")  # fmt: skip
                    else:
                        queue.appendleft(gone)
                continue
            except ray.exceptions.RayError as error:  # a worker bug, not a death: record it
                await on_lost(problem, f"the Ray worker failed: {type(error).__name__}: {error}".splitlines()[0])
                continue
            await on_result(problem, value)


async def run_bench_ray(
    problems: Sequence[Problem],
    settings: BenchSettings,
    models: Models,
    specs: WorkerSpecs,
    out: str | os.PathLike,
    *,
    address: str | None = None,
    workers: int | None = None,
    retry_errors: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict]]:
    """`run_bench` on Ray workers; returns {config: {id: record}}. `models` are the driver's own
    (to read and write MAgICoRe's checkpoints; never called here); workers build theirs from
    `specs`. `workers` defaults to the cluster's CPU count."""
    out = Path(out)
    log = log or (lambda text: print(text, file=sys.stderr))
    runs = open_run(problems, settings, models, out)
    started_here = start_ray(address, log)
    ray = _ray()
    size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    pool = WorkerPool(specs, settings.config_values(), size, log)
    store = SampleStore(out)
    scores = ScoreLog(out)
    results: dict[str, dict[str, dict]] = {}
    try:
        seconds, nodes = await pool.ready()
        log(f"ray: {size} worker(s) on {nodes} node(s) ready in {seconds:.1f} s, "
            f"{settings.concurrency} problem(s) at a time each")  # fmt: skip
        await _sample(pool, problems, max(r.k for r in runs), settings, store, progress, log)
        for run in runs:
            todo, sink = problems_to_run(run, problems, out, store, retry_errors, log)
            if todo and run.method == "magicore" and settings.calibration == "batch":
                await _magicore_batch(pool, run, problems, todo, settings, models, store, scores, out, sink, progress,
                                      log)  # fmt: skip
            elif todo:
                fixed = models.saved_calibration if run.method == "magicore" else None
                await _simple(pool, run, todo, store, scores, sink, settings.concurrency, progress, fixed)
            results[run.label] = load_results(out, run.label)
    finally:
        pool.shutdown()
        if started_here:
            ray.shutdown()
    return results


async def _sample(pool, problems, k, settings, store, progress, log) -> None:
    """Phase 0 on the workers: every problem's missing chains, up to `k`; the driver appends
    each entry to samples.jsonl. A problem whose sampling fails waits for a rerun."""
    todo = [p for p in problems if not store.has(p.id, k)]
    if not todo:
        return
    log(f"sampling: {len(todo)} problem(s) need {k} chains each")
    bar = ProgressBar(len(todo), f"sample {k} chains", progress)

    async def on_result(problem, entry):
        if "error" in entry:
            log(f"sampling {problem.id} failed: {entry['error']}")
        else:
            store.add(entry)
        bar.update()

    async def on_lost(problem, why):
        await on_result(problem, {"error": why})

    def call(worker, problem):
        return worker.sample.remote(problem, store.entries.get(problem.id), k, settings.sample_seed)

    try:
        await dispatch(pool, todo, call, on_result, on_lost, settings.concurrency)
    finally:
        bar.close()


async def _simple(pool, run, todo, store, scores, sink, per_worker, progress, calibration) -> None:
    """A baseline, Self-Refine, or MAgICoRe with a fixed (saved) or its own calibration: one
    call a problem, with its stored chains."""
    bar = ProgressBar(len(todo), run.label, progress)

    async def on_result(problem, reply):
        scores.add(reply["scores"])
        record = await graded(problem, reply["record"])  # a code problem's hidden tests (no-op otherwise)
        sink.append(record)
        bar.update(record)

    async def on_lost(problem, why):
        await on_result(problem, {"record": make_record(problem, run.method, None, None, MagicoreError(why),
                                                        config=run.label, k=run.k), "scores": []})  # fmt: skip

    def call(worker, problem):
        return worker.run.remote(run.method, run.k, problem, _chains(store, problem, run.k), calibration, run.route)

    try:
        await dispatch(pool, todo, call, on_result, on_lost, per_worker)
    finally:
        bar.close()


def _chains(store, problem: Problem, k: int) -> list[dict]:
    """The stored chains a configuration with this k replays (self-refine@k's k runs start
    from chains 0 to k-1 as well)."""
    return store.chains(problem.id)[:k]


async def _magicore_batch(pool, run, problems, todo, settings, models, samples, scores, out, sink, progress,
                          log) -> None:  # fmt: skip
    from magicore.evals.bench_magicore import batch_calibration
    from magicore.graphs.api import result_from_state
    from magicore.graphs.build import build_graph, resolve_reward
    from magicore.graphs.checkpoint import sqlite_checkpointer

    label, k = run.label, run.k
    reward = resolve_reward(models.reward, models.model)
    chains_log = JsonlLog(out / f"{label}.calibration_chains.jsonl")
    known = {r["id"]: r for r in chains_log.read()}
    failed: set[str] = set()
    spent: dict[str, float] = {p.id: float(known[p.id].get("seconds") or 0.0) for p in todo if p.id in known}

    def error_record(problem, why):
        return make_record(problem, "magicore", None, None, MagicoreError(why), config=label, k=k)

    async with sqlite_checkpointer(out / "checkpoints.sqlite") as saver:
        # the local engine's graph, used here only to read and write its checkpoints
        store = build_graph("magicore", model=models.model, reviewer_model=models.reviewer_model,
                            refiner_model=models.refiner_model, reward=reward,
                            config=settings.method_config(k=k, route=run.route),
                            checkpointer=saver, interrupt_before=[PAUSE_BEFORE], saved_calibration=False)  # fmt: skip
        paused: set[str] = set()
        phase1: list[Problem] = []
        for problem in todo:
            state, finished = await _saved_state(store, thread_config(problem, label))
            if finished:  # finished in an earlier run that stopped before logging it
                result = result_from_state(problem.question, "magicore", state, spent.get(problem.id, 0.0))
                sink.append(await graded(problem, make_record(problem, "magicore", result, None, config=label, k=k)))
            elif state is not None:
                paused.add(problem.id)
            else:
                phase1.append(problem)

        bar = ProgressBar(len(phase1), f"{label} 1/2 solve+score", progress)

        async def saved(problem, reply):
            scores.add(reply.get("scores", []))
            if "error" in reply:
                failed.add(problem.id)
                sink.append(reply["error"])
            else:
                spent[problem.id] = reply["seconds"]
                if reply["first"] is not None and problem.id not in known:
                    chains_log.append(reply["first"])
                    known[problem.id] = reply["first"]
                await import_checkpoint(saver, thread_config(problem, label), reply["saved"])
                paused.add(problem.id)
            bar.update()

        async def lost1(problem, why):
            await saved(problem, {"error": error_record(problem, why)})

        def call1(worker, problem):
            return worker.phase1.remote(k, problem, _chains(samples, problem, k), run.route)

        try:
            await dispatch(pool, phase1, call1, saved, lost1, settings.concurrency)
        finally:
            bar.close()

        cal = batch_calibration(out, problems, known, log, label)
        if cal is None:
            log(f"{label}: no first chain to calibrate on (every problem failed); phase 2 skipped")
            return
        remaining = [p for p in todo if p.id in paused and p.id not in failed]
        bar = ProgressBar(len(remaining), f"{label} 2/2 route+refine", progress)

        async def finished(problem, reply):
            scores.add(reply["scores"])
            record = await graded(problem, reply["record"])
            sink.append(record)
            bar.update(record)

        async def lost2(problem, why):
            await finished(problem, {"record": error_record(problem, why), "scores": []})

        states = {p.id: await export_checkpoint(saver, thread_config(p, label)) for p in remaining}

        def call2(worker, problem):
            return worker.phase2.remote(k, problem, _chains(samples, problem, k), states[problem.id], cal,
                                        spent.get(problem.id, 0.0), run.route)  # fmt: skip

        try:
            await dispatch(pool, remaining, call2, finished, lost2, settings.concurrency)
        finally:
            bar.close()


async def _saved_state(store, config: dict) -> tuple[dict | None, bool]:
    """(state, finished) of a problem's thread: its finished state; its state paused before
    "route" (phase 2 begun in an earlier run is rolled back to that checkpoint, so that the
    thread's latest checkpoint is the paused one); or (None, False) when phase 1 must run."""
    snapshot = await store.aget_state(config)
    values = snapshot.values
    if not values:
        return None, False
    if not snapshot.next and values.get("route"):
        return values, True
    if snapshot.next == (PAUSE_BEFORE,) and not values.get("route"):
        return values, False
    if values.get("route"):
        async for past in store.aget_state_history(config):
            if past.next == (PAUSE_BEFORE,) and not past.values.get("route"):
                saved = await export_checkpoint(store.checkpointer, past.config)
                await import_checkpoint(store.checkpointer, config, saved)
                return past.values, False
    return None, False
