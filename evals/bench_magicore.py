"""MAgICoRe in `magicore bench`: phase 1 (solve and score every problem, pause before "route"),
the batch calibration from the first chain of every problem, phase 2 (route, review, refine).

Every problem is a thread in checkpoints.sqlite, so an interrupted problem resumes from its
last checkpoint without sampling again, and a rerun reuses calibration.json.

Traced, every problem has one `invoke_workflow magicore` root span, as under `asolve`: opened
when phase 1 starts the problem, entered again for phase 2 and ended with the run's outcome, so
both phases are one trace (a problem resumed in a later run gets a new root for what remains).
"""

from __future__ import annotations

import asyncio
import json
import time

from magicore.agents.coalesce import run_scope
from magicore.evals.bench_store import JsonlLog, make_record, write_json_atomic
from magicore.evals.datasets import FAMILIES
from magicore.evals.grading import graded
from magicore.evals.datasets import Problem
from magicore.evals.progress import ProgressBar
from magicore.evals.thread_state import thread_state
from magicore.graphs.api import result_from_state
from magicore.graphs.build import build_graph
from magicore.graphs.calibration import from_first_chains
from magicore.graphs.checkpoint import sqlite_checkpointer
from magicore.graphs.routing import reward as chain_reward
from magicore.graphs.state import Calibration
from magicore.graphs.tracing import Workflow, trace_id_of
from magicore.tools import telemetry


def _thread(problem: Problem, label: str = "magicore") -> dict:
    return {"configurable": {"thread_id": f"{label}:problem:{problem.id}"}}


async def first_chain(graph, config: dict):
    """The first chain the Solver sampled, scored: from the checkpoint after "solve" (sample
    order) matched to the scored pool, so it survives a crash between phase 1 and its log."""
    snapshot = await graph.aget_state(config)
    pool = list(snapshot.values.get("pool") or [])
    async for past in graph.aget_state_history(config):
        if past.next == ("score",) and past.values.get("round", 0) == 0 and past.values.get("pending"):
            text = past.values["pending"][0].text
            for chain in pool:
                if chain.origin == "solver" and chain.text == text and chain.scored:
                    return chain
    return None


def _inputs(problem: Problem) -> dict:
    """The graph's input for a problem: the question, and the dataset's task family if it has one."""
    family = FAMILIES.get(problem.dataset)
    return {"question": problem.question, **({"family": family} if family else {})}


async def run_magicore(problems, todo, settings, models, reward, out, sink, limit, progress, log, *,
                       run=None, solver=None) -> None:  # fmt: skip
    """MAgICoRe on `todo`: `run` (a paired configuration) gives its k and label, `solver` the
    replayed chains."""
    if not todo:
        return
    label = run.label if run else "magicore"
    k = run.k if run else settings.k
    mode = settings.calibration
    fixed = models.saved_calibration if mode == "saved" else None
    roots: dict[str, Workflow] = {}  # problem id -> its root span, open from phase 1 to phase 2
    try:
        async with sqlite_checkpointer(out / "checkpoints.sqlite") as saver:
            common = dict(model=models.model, reviewer_model=models.reviewer_model, refiner_model=models.refiner_model,
                          reward=reward, config=settings.method_config(fixed, k=k, route=run.route if run else "adaptive"),
                          checkpointer=saver,
                          saved_calibration=False, solver=solver)  # fmt: skip  # the mode says which calibration
            graph = build_graph("magicore", **common)
            spent: dict[str, float] = {}  # phase-1 seconds per problem in this run
            failed: set[str] = set()
            cal = fixed
            if mode == "batch":
                pause = build_graph("magicore", interrupt_before=["route"], **common)
                cal = await _phase1(problems, todo, pause, out, sink, limit, progress, spent, failed, roots, log, label, k)
                if cal is None:
                    log(f"{label}: no first chain to calibrate on (every problem failed); phase 2 skipped")
                    return
            remaining = [p for p in todo if p.id not in failed]
            bar = ProgressBar(len(remaining), f"{label} 2/2 route+refine" if mode == "batch" else label, progress)

            async def one(problem: Problem) -> None:
                config = _thread(problem, label)
                async with limit:
                    started = time.perf_counter()
                    root = roots.pop(problem.id, None)
                    result = None
                    try:
                        snapshot = await graph.aget_state(config)
                        stage = thread_state(snapshot, pause="route", passed="route").stage
                        if stage == "new":
                            start: dict | str | None = _inputs(problem)
                        elif stage == "done":  # finished in an earlier run that stopped before logging it
                            start = "done"
                        else:  # resumed from the checkpoint; stored writes are not redone
                            start = None
                            if cal is not None and stage == "paused":
                                await graph.aupdate_state(config, {"calibration": cal})
                        state = snapshot.values
                        if start != "done":
                            root = root or Workflow("magicore", problem.question)
                            with root.active():
                                telemetry.add_event("magicore.bench.phase", {"magicore.bench.phase": 2})
                                state = await _stream(graph, start, config)
                        seconds = spent.get(problem.id, 0.0) + time.perf_counter() - started
                        result = result_from_state(problem.question, "magicore", state, seconds)
                        if root is not None:
                            result.trace_id = trace_id_of(root.span)
                        record = make_record(problem, "magicore", result, None if start == "done" else seconds,
                                             config=label, k=k)  # fmt: skip
                    except Exception as error:
                        seconds = spent.get(problem.id, 0.0) + time.perf_counter() - started
                        record = make_record(problem, "magicore", None, seconds, error, config=label, k=k)
                    finally:
                        if root is not None:
                            root.end(result)
                    record = await graded(problem, record)
                    sink.append(record)
                    bar.update(record)

            try:
                await asyncio.gather(*(one(p) for p in remaining))
            finally:
                bar.close()
    finally:
        for root in roots.values():  # interrupted, or phase 2 skipped: export what there is
            root.end()


async def _stream(graph, inputs, config: dict) -> dict:
    # "sync": a step's checkpoint is stored before the next step starts, so the writes a node
    # stores always follow their checkpoint; the default ("async") may store them first, and a
    # crash then orphans them and the node (the Solver's sampling, say) runs again.
    state: dict = {}
    with run_scope():  # a batch of model calls never mixes two problems' usage (agents/coalesce.py)
        async for chunk in graph.astream(inputs, config, stream_mode="values", durability="sync"):
            state = chunk
    return state


async def _phase1(problems, todo, pause, out, sink, limit, progress, spent, failed, roots, log,
                  label="magicore", k=None) -> Calibration | None:  # fmt: skip
    """Run every unfinished problem to just before "route", then return the batch calibration
    (loaded from calibration.json when an earlier run computed it). A problem run here leaves
    its open root span in `roots` for phase 2."""
    chains_log = JsonlLog(out / f"{label}.calibration_chains.jsonl")
    known = {r["id"]: r for r in chains_log.read()}
    bar = ProgressBar(len(todo), f"{label} 1/2 solve+score", progress)

    async def one(problem: Problem) -> None:
        config = _thread(problem, label)
        async with limit:
            started = time.perf_counter()
            try:
                where = thread_state(await pause.aget_state(config), pause="route", passed="route")
                if where.stage in ("new", "running") and not where.passed_pause:
                    root = roots[problem.id] = Workflow("magicore", problem.question)
                    with root.active():
                        telemetry.add_event("magicore.bench.phase", {"magicore.bench.phase": 1})
                        await _stream(pause, _inputs(problem) if where.stage == "new" else None, config)
                    spent[problem.id] = time.perf_counter() - started
                elif problem.id in known:  # phase 1 ran in an earlier run: count its time
                    spent[problem.id] = float(known[problem.id].get("seconds") or 0.0)
                if problem.id not in known:
                    chain = await first_chain(pause, config)
                    if chain is not None:
                        entry = {"id": problem.id, "reward": chain_reward(chain), "orm": chain.orm,
                                 "step_scores": chain.step_scores, "answer": chain.answer,
                                 "seconds": round(spent.get(problem.id, 0.0), 3)}  # fmt: skip
                        chains_log.append(entry)
                        known[problem.id] = entry
            except Exception as error:
                failed.add(problem.id)
                if problem.id in roots:
                    roots.pop(problem.id).end()
                sink.append(make_record(problem, "magicore", None, time.perf_counter() - started, error,
                                        config=label, k=k))  # fmt: skip
            bar.update()

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        bar.close()
    return batch_calibration(out, problems, known, log, label)


def batch_calibration(out, problems, known: dict, log, label: str = "magicore") -> Calibration | None:
    """{label}.calibration.json, or mu/sigma over the first chain of every problem (`known`:
    problem id -> logged first chain), in problem order, written there; None without any."""
    cal_path = out / f"{label}.calibration.json"
    if cal_path.exists():
        data = json.loads(cal_path.read_text(encoding="utf-8"))
        return Calibration(mu=data["mu"], sigma=data["sigma"], source="batch", n=data.get("n"))
    ids = [p.id for p in problems if p.id in known]
    if not ids:
        return None
    chains = [_Scored(known[i]) for i in ids]
    cal = from_first_chains(chains, source="batch")
    missing = len(problems) - len(ids)
    write_json_atomic(cal_path, {**cal.model_dump(), "problem_ids": ids, "missing": missing})
    note = f" ({missing} problem(s) without a first chain left out)" if missing else ""
    log(f"{label}: batch calibration mu = {cal.mu:.4f}, sigma = {cal.sigma:.4f} over {cal.n} first chains{note}")
    return cal


class _Scored:
    """A logged first chain, seen as the ScoredChain that calibration reads."""

    def __init__(self, entry: dict):
        self.answer = entry.get("answer")
        self.orm = float(entry.get("orm") or 0.0)
        self.step_scores = list(entry.get("step_scores") or [])
