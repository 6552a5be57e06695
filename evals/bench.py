"""The benchmark runner: method configurations on the same problems, paired by construction.

Each configuration is a method and its k (`magicore@4`, `sc@12`). Every problem's chains are
sampled once, at the largest k, and every configuration replays a prefix of them
(evals/paired.py), so configurations differ by method, not by sampling luck.

Resumable and crash-safe. `--out DIR` holds:

    run.json                        settings and problem ids; a rerun must match them
    samples.jsonl                   the chains sampled once per problem, with their cost
    scores.jsonl                    reward scores per chain, computed once, charged to each user
    {config}.jsonl                  one line per finished problem, appended, flushed and fsynced
    {config}.calibration.json       MAgICoRe's batch mu/sigma (first chain of every problem)
    {config}.calibration_chains.jsonl   the first chains' rewards, as phase 1 finds them
    checkpoints.sqlite              MAgICoRe's checkpointed graphs, one thread per problem

Batch calibration follows the reference: phase 1 runs MAgICoRe on every problem up to just
before "route"; mu and sigma come from the first sampled chain of every problem; phase 2 resumes
each problem with them. A rerun skips finished problems, reuses samples and calibration, and
resumes a problem interrupted mid-graph from its checkpoint; a configuration with a larger k
samples only the chains that are missing. Imports graphs, agents, tools; never ui.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from magicore.agents.solver import Solver, SolverConfig
from magicore.evals.bench_magicore import run_magicore
from magicore.evals.bench_store import (
    JsonlLog,
    load_results,
    make_record,
    results_path,
    write_json_atomic,
)
from magicore.evals.datasets import FAMILIES, Problem
from magicore.evals.grading import graded
from magicore.evals.paired import CachedReward, MethodRun, ReplaySolver, SampleStore, parse_configs, sample_missing
from magicore.evals.progress import ProgressBar
from magicore.graphs.aggregation import majority_vote
from magicore.graphs.api import asolve
from magicore.graphs.build import build_graph, normalize_method, resolve_reward
from magicore.graphs.grouping import answer_groups
from magicore.graphs.config import MethodConfig
from magicore.graphs.result import RunResult
from magicore.graphs.state import Calibration, merge_usage
from magicore.graphs.tracing import workflow_span
from magicore.tools.errors import InputError
from magicore.tools.rewards.base import RewardModel

CALIBRATION_MODES = ("batch", "self", "saved")
#: Settings a rerun into the same --out must share (methods may be added).
FINGERPRINT = ("dataset", "subset", "limit", "seed", "sample_seed", "problem_ids", "rounds", "self_refine_rounds",
               "max_tokens", "temperature", "top_p", "model", "reward", "calibration", "refine")  # fmt: skip


@dataclass
class BenchSettings:
    """What a run is: the problems and the budget every method gets."""

    dataset: str
    methods: list[str]  # configurations, "METHOD@K"; a bare method gets k
    k: int = 8
    rounds: int = 3
    self_refine_rounds: int = 4
    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    subset: str | None = None
    limit: int | None = None
    seed: int | None = None
    sample_seed: int = 0  # chain i of every problem is sampled with seed sample_seed + i
    refine: str = "pool"  # MAgICoRe's refine scope: pool or latest (graphs/config.py)
    model: str = ""
    reward: str = ""
    calibration: str = "batch"  # batch | self | saved
    concurrency: int = 4
    problem_ids: list[str] = field(default_factory=list)

    def config_values(self) -> dict[str, Any]:
        return {"k": self.k, "rounds": self.rounds, "self_refine_rounds": self.self_refine_rounds,
                "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "refine": self.refine}  # fmt: skip

    def method_config(self, calibration: Calibration | None = None, *, k: int | None = None,
                      route: str = "adaptive") -> MethodConfig:  # fmt: skip
        values = self.config_values()
        if k is not None:
            values["k"] = k
        return MethodConfig(**values, calibration=calibration, route=route)


# --------------------------------------------------------------------------- run settings


def prepare_out(out: Path, settings: BenchSettings) -> None:
    """Create --out, or check that the run already there has the same settings."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot use {out} as the output directory: {e.strerror}") from None
    path = out / "run.json"
    mine = asdict(settings)
    if path.exists():
        theirs = read_settings(out)
        defaults = asdict(BenchSettings(dataset="", methods=[]))  # what a run written before a key existed used
        diffs = [key for key in FINGERPRINT if theirs.get(key, defaults.get(key)) != mine.get(key)]
        if diffs:
            shown = ", ".join(
                f"{key} {_short(theirs.get(key))} there vs {_short(mine.get(key))} now" for key in diffs
            )
            raise InputError(f"{out} holds a run with other settings ({shown}); use another --out")
        mine["methods"] = list(dict.fromkeys([*theirs.get("methods", []), *settings.methods]))
        mine["created"] = theirs.get("created")
    else:
        mine["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(path, mine)


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 3:
        return f"[{len(value)} ids]"
    return json.dumps(value)


def read_settings(out: Path) -> dict:
    path = Path(out) / "run.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{out} holds no benchmark run (no run.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}; move it away to start a new run there") from None
    if not isinstance(settings, dict):
        raise InputError(f"{path} is not a benchmark run's settings; move it away to start a new run there")
    return settings


# --------------------------------------------------------------------------- the runner


@dataclass
class Models:
    model: BaseChatModel
    reviewer_model: BaseChatModel | None = None
    refiner_model: BaseChatModel | None = None
    reward: RewardModel | str | None = None
    saved_calibration: Calibration | None = None  # for calibration="saved"


async def run_bench(
    problems: Sequence[Problem],
    settings: BenchSettings,
    models: Models,
    out: str | os.PathLike,
    *,
    retry_errors: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict]]:
    """Run every method of `settings` on `problems`; returns {method: {id: record}}.

    Finished problems (a line in {method}.jsonl) are skipped; with `retry_errors`, problems
    whose last record is an error run again.
    """
    out = Path(out)
    runs = open_run(problems, settings, models, out)
    log = log or (lambda text: print(text, file=sys.stderr))
    limit = asyncio.Semaphore(settings.concurrency)
    store = SampleStore(out)
    await _sample(problems, max(r.k for r in runs), settings, models, store, limit, progress, log)
    replay = ReplaySolver(store, problems, model=models.model)
    reward = None
    if {"magicore", "bok"} & {r.method for r in runs}:
        families = {FAMILIES.get(p.dataset) for p in problems}
        family = families.pop() if len(families) == 1 else None  # the default reward suits the family
        reward = CachedReward(resolve_reward(models.reward, models.model, family), out)
    results: dict[str, dict[str, dict]] = {}
    for run in runs:
        todo, sink = problems_to_run(run, problems, out, store, retry_errors, log)
        if run.method == "magicore":
            await run_magicore(problems, todo, settings, models, reward, out, sink, limit, progress, log,
                               run=run, solver=replay)  # fmt: skip
        elif run.method == "self-refine":
            await _run_self_refine(run, todo, settings, models, replay, sink, limit, progress)
        elif todo:
            await _run_baseline(run, todo, settings, models, reward, replay, sink, limit, progress)
        results[run.label] = load_results(out, run.label)
    return results


def open_run(problems: Sequence[Problem], settings: BenchSettings, models: Models, out: Path) -> list[MethodRun]:
    """Check a run's settings and configurations, and create or check --out (both engines)."""
    settings.problem_ids = [p.id for p in problems]
    if len(set(settings.problem_ids)) != len(problems):
        raise InputError("the selected problems have duplicate ids")
    runs = parse_configs(settings.methods, settings.k, normalize_method)
    settings.methods = [run.label for run in runs]
    if settings.calibration not in CALIBRATION_MODES:
        raise InputError(f"unknown calibration '{settings.calibration}': use {', '.join(CALIBRATION_MODES)}")
    if any(r.method == "magicore" for r in runs) and settings.calibration == "saved" and models.saved_calibration is None:
        raise InputError("--calibration saved: no saved calibration for this model and reward "
                         "(run `magicore calibrate` first)")  # fmt: skip
    prepare_out(out, settings)
    return runs


def problems_to_run(run: MethodRun, problems: Sequence[Problem], out: Path, store: SampleStore,
                    retry_errors: bool, log: Callable[[str], None]) -> tuple[list[Problem], JsonlLog]:  # fmt: skip
    """A configuration's problems still to run (not recorded, or errors to retry, and sampled),
    said on the log, and the file its records go to (both engines)."""
    done = load_results(out, run.label)
    todo = [p for p in problems if p.id not in done or (retry_errors and done[p.id].get("error"))]
    todo = [p for p in todo if store.has(p.id, run.k)]  # a problem whose sampling failed waits for a rerun
    if todo:
        log(f"{run.label}: {len(todo)} problem(s) to run, {len(problems) - len(todo)} done or waiting for samples")
    else:
        log(f"{run.label}: nothing to run ({len(done)} of {len(problems)} problems done)")
    return todo, JsonlLog(results_path(out, run.label))


async def _sample(problems, k, settings, models, store, limit, progress, log) -> None:
    """Phase 0: sample every problem's chains once, up to `k` (only the missing ones)."""
    todo = [p for p in problems if not store.has(p.id, k)]
    if not todo:
        return
    kept = sum(len(store.partial_chains(p.id)) for p in todo)
    log(f"sampling: {len(todo)} problem(s) need {k} chains each"
        + (f" ({kept} chain(s) kept from an interrupted sampling)" if kept else ""))  # fmt: skip
    solver = sampling_solver(models.model, settings.config_values())
    bar = ProgressBar(len(todo), f"sample {k} chains", progress)

    async def one(problem: Problem) -> None:
        async with limit:
            try:
                with workflow_span("sample", problem.question):  # one trace per problem's sampling
                    entry = await sample_missing(
                        solver, problem, store.entries.get(problem.id), k, settings.sample_seed,
                        partial=store.partial_chains(problem.id),
                        on_chain=lambda i, chain: store.add_partial(problem.id, i, chain),
                    )  # fmt: skip
            except Exception as error:  # one failing problem must not end the batch; a rerun retries it
                log(f"sampling {problem.id} failed: {error}")
                bar.update()
                return
            store.add(entry)
            bar.update()

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        bar.close()
        store.compact()


def sampling_solver(model: BaseChatModel, config_values: dict) -> Solver:
    """The Solver that samples phase 0's chains, with the run's temperature, top_p and max_tokens."""
    return Solver(model, SolverConfig(temperature=config_values["temperature"], top_p=config_values["top_p"],
                                      max_tokens=config_values["max_tokens"]))  # fmt: skip


def baseline_graph(run: MethodRun, config_values: dict, model: BaseChatModel, reward, replay: ReplaySolver):
    """Self-Consistency or Best-of-k (`run`) on the replayed chains."""
    config = MethodConfig(**{**config_values, "k": run.k})
    return build_graph(run.method, model=model, reward=reward if run.method == "bok" else None, config=config,
                       solver=replay)  # fmt: skip


async def solve_baseline(run: MethodRun, problem: Problem, model: BaseChatModel, graph) -> dict:
    """One problem's record of a baseline configuration (an error is recorded, not raised)."""
    started = time.perf_counter()
    try:
        result = await asolve(problem.question, method=run.method, model=model, graph=graph,
                              family=FAMILIES.get(problem.dataset))  # fmt: skip
        record = make_record(problem, run.method, result, result.seconds, config=run.label, k=run.k)
    except Exception as error:  # one failing problem must not end the batch
        record = make_record(problem, run.method, None, time.perf_counter() - started, error,
                             config=run.label, k=run.k)  # fmt: skip
    return await graded(problem, record)


def self_refine_graphs(run: MethodRun, config_values: dict, model: BaseChatModel, replay: ReplaySolver) -> list:
    """`run.k` single-chain Self-Refine graphs, the i-th starting from the problem's chain i."""
    config = MethodConfig(**{**config_values, "k": 1})
    return [build_graph("self-refine", model=model, config=config, solver=replay.at(i)) for i in range(run.k)]


async def solve_self_refine(run: MethodRun, problem: Problem, model: BaseChatModel, graphs: list) -> dict:
    """One problem's record of `self-refine@k`: the k runs combined by `combine_refined`."""
    started = time.perf_counter()
    try:
        family = FAMILIES.get(problem.dataset)
        results = await asyncio.gather(*(asolve(problem.question, method="self-refine", model=model, graph=g,
                                                family=family) for g in graphs))  # fmt: skip
        groups = await answer_groups(problem.question, family, results)
        result = combine_refined(problem.question, results, time.perf_counter() - started, groups)
        record = make_record(problem, "self-refine", result, result.seconds, config=run.label, k=run.k)
    except Exception as error:
        record = make_record(problem, "self-refine", None, time.perf_counter() - started, error,
                             config=run.label, k=run.k)  # fmt: skip
    return await graded(problem, record)


async def _run_baseline(run: MethodRun, todo, settings, models, reward, replay, sink, limit, progress) -> None:
    graph = baseline_graph(run, settings.config_values(), models.model, reward, replay)
    await _run_each(run, todo, lambda problem: solve_baseline(run, problem, models.model, graph), sink, limit, progress)


async def _run_self_refine(run: MethodRun, todo, settings, models, replay, sink, limit, progress) -> None:
    """Self-Refine on k chains, as the MAgICoRe paper evaluates it: each of the problem's first
    k sampled chains is refined on its own (the single-chain method), and the final answer is
    the majority of the k refined answers."""
    graphs = self_refine_graphs(run, settings.config_values(), models.model, replay)
    await _run_each(run, todo, lambda problem: solve_self_refine(run, problem, models.model, graphs), sink, limit,
                    progress)  # fmt: skip


async def _run_each(run: MethodRun, todo, solve_one, sink, limit, progress) -> None:
    """`solve_one(problem)` for every problem, `limit` at a time, each record logged as it comes."""
    bar = ProgressBar(len(todo), run.label, progress)

    async def one(problem: Problem) -> None:
        async with limit:
            record = await solve_one(problem)
            sink.append(record)
            bar.update(record)

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        bar.close()


def combine_refined(question: str, results: Sequence[RunResult], seconds: float,
                    groups: Sequence[str | None] | None = None) -> RunResult:  # fmt: skip
    """k single-chain Self-Refine runs as one: the majority of their final answers (grouped by
    `groups` when given: programs by behaviour), their summed cost, and each run's drafts
    (tagged with the chain they started from)."""

    class _Final:
        def __init__(self, answer):
            self.answer = answer

    vote = majority_vote([_Final(r.answer) for r in results], groups)
    usage: dict = {}
    for r in results:
        usage = merge_usage(usage, r.usage_by_role)
    drafts = [{**d, "chain": i} for i, r in enumerate(results) for d in r.drafts]
    return RunResult(
        question=question, answer=vote.answer, method="self-refine", votes=vote.weights,
        llm_calls=sum(r.llm_calls for r in results), requests=sum(r.requests for r in results),
        input_tokens=sum(r.input_tokens for r in results), output_tokens=sum(r.output_tokens for r in results),
        seconds=seconds, rounds=max((r.rounds for r in results), default=0), usage_by_role=usage, drafts=drafts,
        chains=[c for r in results for c in r.chains[:1]],
    )
