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
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from magicore.evals.datasets import Problem
from magicore.graphs.api import asolve, result_from_state
from magicore.graphs.build import build_graph, normalize_method, resolve_reward
from magicore.graphs.calibration import from_first_chains
from magicore.graphs.config import MethodConfig
from magicore.graphs.result import RunResult
from magicore.graphs.routing import reward as chain_reward
from magicore.graphs.state import Calibration
from magicore.tools.answers import answers_match
from magicore.tools.errors import InputError
from magicore.tools.rewards.base import RewardModel

CALIBRATION_MODES = ("batch", "self", "saved")
#: Settings a rerun into the same --out must share (methods may be added).
FINGERPRINT = ("dataset", "subset", "limit", "seed", "problem_ids", "k", "rounds", "max_tokens", "temperature",
               "top_p", "model", "reward", "calibration")  # fmt: skip


@dataclass
class BenchSettings:
    """What a run is: the problems and the budget every method gets."""

    dataset: str
    methods: list[str]
    k: int = 8
    rounds: int = 3
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

    def method_config(self, calibration: Calibration | None = None) -> MethodConfig:
        return MethodConfig(k=self.k, rounds=self.rounds, max_tokens=self.max_tokens, temperature=self.temperature,
                            top_p=self.top_p, calibration=calibration)  # fmt: skip


# --------------------------------------------------------------------------- durable files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write a whole file so that a crash leaves the old one or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


class JsonlLog:
    """An append-only JSONL file: each record is one `write` of one whole line, then fsync.

    A crash can at worst leave a torn last line (no newline); reading drops it and cuts the
    file back to its last complete line, so no torn line is ever glued to the next record.
    """

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn tail from a crash mid-write
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        out = []
        for line in data[:end].splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def results_path(out: Path, method: str) -> Path:
    return Path(out) / f"{method}.jsonl"


def load_results(out: Path, method: str) -> dict[str, dict]:
    """The last record of each problem id of a method (a retried error replaces the error)."""
    return {r["id"]: r for r in JsonlLog(results_path(out, method)).read() if "id" in r}


# --------------------------------------------------------------------------- run settings


def prepare_out(out: Path, settings: BenchSettings) -> None:
    """Create --out, or check that the run already there has the same settings."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    mine = asdict(settings)
    if path.exists():
        theirs = json.loads(path.read_text(encoding="utf-8"))
        diffs = [key for key in FINGERPRINT if theirs.get(key) != mine.get(key)]
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
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{out} holds no benchmark run (no run.json)") from None


# --------------------------------------------------------------------------- records


def make_record(problem: Problem, method: str, result: RunResult | None, seconds: float | None,
                error: BaseException | None = None) -> dict:  # fmt: skip
    """One line of {method}.jsonl."""
    route = result.route if result else []
    answer = result.answer if result else None
    return {
        "id": problem.id,
        "method": method,
        "question": problem.question,
        "gold": problem.answer,
        "answer": answer,
        "correct": bool(error is None and answers_match(answer, problem.answer)),
        "llm_calls": result.llm_calls if result else 0,
        "requests": result.requests if result else 0,
        "input_tokens": result.input_tokens if result else 0,
        "output_tokens": result.output_tokens if result else 0,
        "seconds": None if seconds is None else round(seconds, 3),
        "hard": route[0]["hard"] if route else None,
        "rounds": result.rounds if result else 0,
        "calibration": route[0].get("calibration") if route else None,
        "votes": result.votes if result else {},
        "error": None if error is None else _error_text(error),
        "finished_at": round(time.time(), 3),
    }


def _error_text(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if type(error).__module__.startswith("magicore") else f"{type(error).__name__}: {text}"


# --------------------------------------------------------------------------- progress


class _Bar:
    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        self.done = self.correct = 0
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="problem", file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5 if sys.stderr.isatty() else 10.0)  # fmt: skip

    def update(self, record: dict | None = None) -> None:
        if record is not None:
            self.done += 1
            self.correct += bool(record.get("correct"))
        if self.bar is not None:
            if record is not None:
                self.bar.set_postfix_str(f"acc {self.correct}/{self.done}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
            await _run_magicore(problems, todo, settings, models, reward, out, sink, limit, progress, log)
        elif todo:
            await _run_baseline(method, todo, settings, models, reward, sink, limit, progress)
        results[method] = load_results(out, method)
    return results


async def _timed(coro) -> tuple[Any, float]:
    started = time.perf_counter()
    value = await coro
    return value, time.perf_counter() - started


async def _run_baseline(method, todo, settings, models, reward, sink, limit, progress) -> None:
    graph = build_graph(method, model=models.model, reviewer_model=models.reviewer_model,
                        refiner_model=models.refiner_model, reward=reward if method == "bok" else None,
                        config=settings.method_config())  # fmt: skip
    bar = _Bar(len(todo), method, progress)

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


# MAgICoRe: phase 1 (solve + score, pause before route), batch calibration, phase 2 (the rest).


def _thread(problem: Problem) -> dict:
    return {"configurable": {"thread_id": f"problem:{problem.id}"}}


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


#: The pydantic types a checkpoint of the graphs' state holds (allowed to be read back).
STATE_TYPES = [("magicore.agents.chain", "Chain"), ("magicore.agents.reviewer", "Review"),
               ("magicore.graphs.state", "Calibration"), ("magicore.graphs.state", "RouteDecision"),
               ("magicore.graphs.state", "Draft")]  # fmt: skip


@contextlib.asynccontextmanager
async def sqlite_checkpointer(path: Path):
    """A SQLite checkpointer that reads magicore's state types back without warnings."""
    import aiosqlite
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(str(path)) as conn:
        yield AsyncSqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))


async def _run_magicore(problems, todo, settings, models, reward, out, sink, limit, progress, log) -> None:
    if not todo:
        return
    mode = settings.calibration
    fixed = models.saved_calibration if mode == "saved" else None
    async with sqlite_checkpointer(out / "checkpoints.sqlite") as saver:
        common = dict(model=models.model, reviewer_model=models.reviewer_model, refiner_model=models.refiner_model,
                      reward=reward, config=settings.method_config(fixed), checkpointer=saver)  # fmt: skip
        graph = build_graph("magicore", **common)
        spent: dict[str, float] = {}  # phase-1 seconds per problem in this run
        failed: set[str] = set()
        cal = fixed
        if mode == "batch":
            pause = build_graph("magicore", interrupt_before=["route"], **common)
            cal = await _phase1(problems, todo, pause, out, sink, limit, progress, spent, failed, log)
            if cal is None:
                log("magicore: no first chain to calibrate on (every problem failed); phase 2 skipped")
                return
        remaining = [p for p in todo if p.id not in failed]
        bar = _Bar(len(remaining), "magicore 2/2 route+refine" if mode == "batch" else "magicore", progress)

        async def one(problem: Problem) -> None:
            config = _thread(problem)
            async with limit:
                started = time.perf_counter()
                try:
                    snapshot = await graph.aget_state(config)
                    if not snapshot.values:
                        start: dict | None = {"question": problem.question}
                    elif snapshot.next:
                        start = None
                        if cal is not None and snapshot.next == ("route",) and not snapshot.values.get("route"):
                            await graph.aupdate_state(config, {"calibration": cal})
                    else:  # finished in an earlier run that stopped before logging it
                        start = "done"
                    state = snapshot.values
                    if start != "done":
                        state = await _stream(graph, start, config)
                    seconds = spent.get(problem.id, 0.0) + time.perf_counter() - started
                    result = result_from_state(problem.question, "magicore", state, seconds)
                    record = make_record(problem, "magicore", result, None if start == "done" else seconds)
                except Exception as error:
                    seconds = spent.get(problem.id, 0.0) + time.perf_counter() - started
                    record = make_record(problem, "magicore", None, seconds, error)
                sink.append(record)
                bar.update(record)

        try:
            await asyncio.gather(*(one(p) for p in remaining))
        finally:
            bar.close()


async def _stream(graph, inputs, config: dict) -> dict:
    state: dict = {}
    async for chunk in graph.astream(inputs, config, stream_mode="values"):
        state = chunk
    return state


async def _phase1(problems, todo, pause, out, sink, limit, progress, spent, failed, log) -> Calibration | None:
    """Run every unfinished problem to just before "route", then return the batch calibration
    (loaded from calibration.json when an earlier run computed it)."""
    cal_path = out / "calibration.json"
    chains_log = JsonlLog(out / "calibration_chains.jsonl")
    known = {r["id"]: r for r in chains_log.read()}
    bar = _Bar(len(todo), "magicore 1/2 solve+score", progress)

    async def one(problem: Problem) -> None:
        config = _thread(problem)
        async with limit:
            started = time.perf_counter()
            try:
                snapshot = await pause.aget_state(config)
                if not snapshot.values.get("route") and snapshot.next != ("route",):
                    await _stream(pause, None if snapshot.next else {"question": problem.question}, config)
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
                sink.append(make_record(problem, "magicore", None, time.perf_counter() - started, error))
            bar.update()

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        bar.close()
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
    log(f"magicore: batch calibration mu = {cal.mu:.4f}, sigma = {cal.sigma:.4f} over {cal.n} first chains{note}")
    return cal


class _Scored:
    """A logged first chain, seen as the ScoredChain that calibration reads."""

    def __init__(self, entry: dict):
        self.answer = entry.get("answer")
        self.orm = float(entry.get("orm") or 0.0)
        self.step_scores = list(entry.get("step_scores") or [])
