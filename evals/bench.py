"""The benchmark runner: every method on the same problems, with the same model and budget.

Resumable and crash-safe. `--out DIR` holds:

    run.json                   settings and problem ids; a rerun must match them
    {method}.jsonl             one line per finished problem, appended, flushed and fsynced
    calibration.json           MAgICoRe's batch mu/sigma (first chain of every problem)
    calibration_chains.jsonl   the first chains' rewards, as phase 1 finds them
    checkpoints.sqlite         MAgICoRe's checkpointed graphs, one thread per problem

Batch calibration follows the reference: phase 1 runs MAgICoRe on every problem up to just
before "route"; mu and sigma come from the first sampled chain of every problem; phase 2 resumes
each problem with them. A rerun skips finished problems, reuses calibration.json, and resumes
a problem interrupted mid-graph from its checkpoint. Imports graphs, agents, tools; never ui.
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

from magicore.evals.bench_magicore import run_magicore
from magicore.evals.bench_store import (
    JsonlLog,
    load_results,
    make_record,
    results_path,
    write_json_atomic,
)
from magicore.evals.datasets import Problem
from magicore.evals.progress import ProgressBar
from magicore.graphs.api import asolve
from magicore.graphs.build import build_graph, normalize_method, resolve_reward
from magicore.graphs.config import MethodConfig
from magicore.graphs.state import Calibration
from magicore.tools.errors import InputError
from magicore.tools.rewards.base import RewardModel

CALIBRATION_MODES = ("batch", "self", "saved")
#: Settings a rerun into the same --out must share (methods may be added).
FINGERPRINT = ("dataset", "subset", "limit", "seed", "problem_ids", "k", "rounds", "self_refine_rounds",
               "max_tokens", "temperature", "top_p", "model", "reward", "calibration")  # fmt: skip


@dataclass
class BenchSettings:
    """What a run is: the problems and the budget every method gets."""

    dataset: str
    methods: list[str]
    k: int = 8
    rounds: int = 3
    self_refine_rounds: int = 4
    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    subset: str | None = None
    limit: int | None = None
    seed: int | None = None
    model: str = ""
    reward: str = ""
    calibration: str = "batch"  # batch | self | saved
    concurrency: int = 4
    problem_ids: list[str] = field(default_factory=list)

    def config_values(self) -> dict[str, Any]:
        return {"k": self.k, "rounds": self.rounds, "self_refine_rounds": self.self_refine_rounds,
                "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}  # fmt: skip

    def method_config(self, calibration: Calibration | None = None) -> MethodConfig:
        return MethodConfig(**self.config_values(), calibration=calibration)


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
    settings.problem_ids = [p.id for p in problems]
    if len(set(settings.problem_ids)) != len(problems):
        raise InputError("the selected problems have duplicate ids")
    methods = [normalize_method(m) for m in settings.methods]
    settings.methods = methods
    if settings.calibration not in CALIBRATION_MODES:
        raise InputError(f"unknown calibration '{settings.calibration}': use {', '.join(CALIBRATION_MODES)}")
    if "magicore" in methods and settings.calibration == "saved" and models.saved_calibration is None:
        raise InputError("--calibration saved: no saved calibration for this model and reward "
                         "(run `magicore calibrate` first)")  # fmt: skip
    prepare_out(out, settings)
    log = log or (lambda text: print(text, file=sys.stderr))
    reward = resolve_reward(models.reward, models.model) if {"magicore", "bok"} & set(methods) else None
    limit = asyncio.Semaphore(settings.concurrency)
    results: dict[str, dict[str, dict]] = {}
    for method in methods:
        done = load_results(out, method)
        todo = [p for p in problems if p.id not in done or (retry_errors and done[p.id].get("error"))]
        if todo:
            log(f"{method}: {len(todo)} problem(s) to run, {len(problems) - len(todo)} already done")
        else:
            log(f"{method}: all {len(problems)} problems already done")
        sink = JsonlLog(results_path(out, method))
        if method == "magicore":
            await run_magicore(problems, todo, settings, models, reward, out, sink, limit, progress, log)
        elif todo:
            await _run_baseline(method, todo, settings, models, reward, sink, limit, progress)
        results[method] = load_results(out, method)
    return results


async def _run_baseline(method, todo, settings, models, reward, sink, limit, progress) -> None:
    graph = build_graph(method, model=models.model, reviewer_model=models.reviewer_model,
                        refiner_model=models.refiner_model, reward=reward if method == "bok" else None,
                        config=settings.method_config())  # fmt: skip
    bar = ProgressBar(len(todo), method, progress)

    async def one(problem: Problem) -> None:
        async with limit:
            started = time.perf_counter()
            try:
                result = await asolve(problem.question, method=method, model=models.model, graph=graph)
                record = make_record(problem, method, result, result.seconds)
            except Exception as error:  # one failing problem must not end the batch
                record = make_record(problem, method, None, time.perf_counter() - started, error)
            sink.append(record)
            bar.update(record)

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        bar.close()


