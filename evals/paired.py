"""Paired benchmark runs: every method starts from the same sampled chains.

Each problem's chains are sampled once, at the largest k any configuration needs, with a fixed
seed per chain, and kept in `samples.jsonl`; `sc@4` uses the first 4 of the chains `sc@12` uses,
and MAgICoRe@4 starts from the same 4. Differences between methods are then differences of
method, not of sampling luck, and MAgICoRe's extra cost is only its reviews and refinements.

A replayed chain costs what it cost when it was sampled: the `ReplaySolver` charges each
method the Solver usage of the chains it takes. Traced, the sampling of a problem is its own
`invoke_workflow sample` trace; a replayed Solver is an `invoke_agent solver` span with
`magicore.replayed` set and no model call under it. Reward scores are cached per chain text
(`scores.jsonl`), and a cached score is charged its original usage too, so a method's record
shows what it would have cost run alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from magicore.agents.chain import Chain
from magicore.agents.coalesce import run_scope
from magicore.agents.prompts import choice_letters, detect_family
from magicore.agents.solver import Solver, SolverResult
from magicore.evals.bench_store import JsonlLog
from magicore.evals.datasets import FAMILIES, Problem
from magicore.tools import telemetry
from magicore.tools.errors import InputError
from magicore.tools.usage import Usage, charge_usage, track_usage
from magicore.tools.rewards.base import RewardModel

SAMPLES_FILE = "samples.jsonl"
#: Chains of problems whose sampling has not finished, one line each as it arrives, so that an
#: interrupted run samples again only the chains it had not got (on a CPU one chain is minutes).
PARTIAL_FILE = "samples.partial.jsonl"
SCORES_FILE = "scores.jsonl"
_CONFIG = re.compile(r"^([a-z][a-z-]*)(?:@(\d+))?$")


#: Configurations that are a method with one setting changed: name -> (method, route).
VARIANTS = {"magicore-all": ("magicore", "all")}  # MAgICoRe refining every problem (no easy/hard routing)


@dataclass(frozen=True)
class MethodRun:
    """One configuration of a paired run: a method, its k ("sc@12") and, for MAgICoRe, its
    route ("magicore-all@4" refines every problem: MethodConfig.route)."""

    method: str
    k: int
    route: str = "adaptive"

    @property
    def label(self) -> str:
        name = next((n for n, v in VARIANTS.items() if v == (self.method, self.route)), self.method)
        return f"{name}@{self.k}"


def parse_configs(text: Sequence[str] | str, default_k: int, normalize: Callable[[str], str]) -> list[MethodRun]:
    """`magicore@4,sc@4,sc@12` -> MethodRuns; a method without @k gets `default_k`."""
    items = text.split(",") if isinstance(text, str) else list(text)
    runs: list[MethodRun] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        m = _CONFIG.match(item.lower())
        if not m:
            raise InputError(f"'{item}' is not a method configuration: use METHOD or METHOD@K, e.g. sc@12")
        k = int(m.group(2)) if m.group(2) else default_k
        if k < 1:
            raise InputError(f"'{item}': k must be at least 1")
        name = m.group(1)
        method, route = VARIANTS[name] if name in VARIANTS else (normalize(name), "adaptive")
        run = MethodRun(method, k, route)
        if run not in runs:
            runs.append(run)
    if not runs:
        raise InputError("no method to run")
    return runs


def usage_dict(usage: Usage) -> dict[str, int]:
    return {"llm_calls": usage.llm_calls, "requests": usage.requests,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}  # fmt: skip


def _usage(d: dict | None) -> Usage:
    d = d or {}
    return Usage(int(d.get("llm_calls", 0)), int(d.get("requests", 0)), int(d.get("input_tokens", 0)),
                 int(d.get("output_tokens", 0)))  # fmt: skip


class StoredChains:
    """Problems' sampled chains held in memory: what `ReplaySolver` reads (`has`, `chains`).
    A Ray worker gets each problem's chains from the driver this way and writes nothing."""

    def __init__(self, entries: dict[str, dict] | None = None):
        self.entries: dict[str, dict] = dict(entries or {})

    def put(self, problem_id: str, chains: Sequence[dict]) -> None:
        self.entries[problem_id] = {"id": problem_id, "chains": list(chains)}

    def drop(self, problem_id: str) -> None:
        self.entries.pop(problem_id, None)

    def has(self, problem_id: str, k: int) -> bool:
        entry = self.entries.get(problem_id)
        return entry is not None and len(entry["chains"]) >= k

    def chains(self, problem_id: str) -> list[dict]:
        entry = self.entries.get(problem_id)
        if entry is None:
            raise InputError(f"problem {problem_id} has no sampled chains{self._where()}")
        return entry["chains"]

    def _where(self) -> str:
        return ""


class SampleStore(StoredChains):
    """`samples.jsonl`: per problem, the chains sampled once for every configuration; and
    `samples.partial.jsonl`: the chains of problems still being sampled, as they arrive."""

    def __init__(self, out: Path):
        self.log = JsonlLog(Path(out) / SAMPLES_FILE)
        super().__init__({e["id"]: e for e in self.log.read() if "id" in e})
        self.partial_log = JsonlLog(Path(out) / PARTIAL_FILE)
        self.partial: dict[str, dict[int, dict]] = {}
        lines = self.partial_log.read()
        self._partial_lines = len(lines)  # lines in the file, kept or not
        for line in lines:
            if line.get("index", -1) >= len(self.entries.get(line.get("id"), {}).get("chains", ())):
                self.partial.setdefault(line["id"], {})[line["index"]] = line["chain"]
        self.compact()

    def _where(self) -> str:
        return f" in {self.log.path}"

    def add(self, entry: dict) -> None:
        self.log.append(entry)
        self.entries[entry["id"]] = entry
        self.partial.pop(entry["id"], None)

    def compact(self) -> None:
        """Rewrite `samples.partial.jsonl` with the chains of unfinished problems only (none: no file)."""
        kept = [{"id": pid, "index": i, "chain": chain}
                for pid, chains in self.partial.items() for i, chain in sorted(chains.items())]  # fmt: skip
        if len(kept) != self._partial_lines:
            self.partial_log.rewrite(kept)
            self._partial_lines = len(kept)

    def partial_chains(self, problem_id: str) -> dict[int, dict]:
        """The chains of an unfinished sampling of this problem, by chain index."""
        return dict(self.partial.get(problem_id, {}))

    def add_partial(self, problem_id: str, index: int, chain: dict) -> None:
        self.partial_log.append({"id": problem_id, "index": index, "chain": chain})
        self._partial_lines += 1
        self.partial.setdefault(problem_id, {})[index] = chain


async def sample_missing(solver: Solver, problem: Problem, entry: dict | None, k: int, sample_seed: int, *,
                         partial: dict[int, dict] | None = None,
                         on_chain: Callable[[int, dict], None] | None = None) -> dict:  # fmt: skip
    """A problem's `samples.jsonl` entry with `k` chains: the stored `entry`'s chains, then the
    missing ones, chain i sampled with seed `sample_seed + i` in a request of its own, so each
    chain's own cost is known exactly (the same seeds a server that ignores `n` gets). Chains in `partial` (by index,
    from an interrupted sampling) are taken as they are; `on_chain(i, chain)` is called as each
    new chain arrives."""
    have = list(entry["chains"]) if entry else []
    family = (entry or {}).get("family") or FAMILIES.get(problem.dataset) or detect_family(problem.question)
    partial = partial or {}

    async def one(i: int) -> dict:
        if i in partial:
            return partial[i]
        with run_scope():  # the chain's own cost stays exact where calls go in batches
            result = await solver.asolve(problem.question, k=1, family=family, seed=sample_seed + i)
        chain = result.chains[0]
        sampled = {"text": chain.text, "finish_reason": chain.finish_reason, "seed": sample_seed + i,
                   "usage": usage_dict(result.usage)}  # fmt: skip
        if on_chain:
            on_chain(i, sampled)
        return sampled

    new = await asyncio.gather(*(one(i) for i in range(len(have), k)))
    return {"id": problem.id, "family": family, "k": k, "seed": sample_seed, "chains": have + list(new)}


class ReplaySolver(Solver):
    """A Solver that returns a problem's stored chains (from `offset` on) instead of sampling,
    and charges their original usage."""

    def __init__(self, store: StoredChains, problems: Sequence[Problem], *, offset: int = 0, model=None):
        super().__init__(model=model)  # the model that sampled the chains (names the span)
        self.store = store
        self.by_question = {p.question.strip(): p.id for p in problems}  # callers may strip the question
        self.offset = offset

    def know(self, problem: Problem) -> None:
        """Answer `problem`'s question from the store (shared with every `at` of this solver)."""
        self.by_question[problem.question.strip()] = problem.id

    def at(self, offset: int) -> ReplaySolver:
        replay = ReplaySolver(self.store, [], offset=offset, model=self.model)
        replay.by_question = self.by_question
        return replay

    async def asolve(self, question, *, k=None, family=None, on_chain=None, seed=None) -> SolverResult:
        problem_id = self.by_question.get(question.strip())
        if problem_id is None:
            raise InputError("a paired run was asked a question it has no samples for")
        stored = self.store.chains(problem_id)[self.offset : self.offset + (k or 1)]
        if len(stored) < (k or 1):
            raise InputError(f"problem {problem_id} has {len(self.store.chains(problem_id))} sampled chains; "
                             f"{self.offset + (k or 1)} are needed")  # fmt: skip
        family = family or detect_family(question)
        choices = choice_letters(question) if family == "mcq" else None
        chains, usage = [], Usage()
        attributes = {"magicore.k": len(stored), "magicore.task_family": family, "magicore.replayed": True,
                      "magicore.replay.offset": self.offset}  # fmt: skip
        with telemetry.agent_span("solver", self.model, **attributes) as span:
            for entry in stored:
                chain = Chain.from_text(entry["text"], choices=choices, family=family,
                                        finish_reason=entry.get("finish_reason"))
                chains.append(chain)
                usage += _usage(entry.get("usage"))
                if on_chain is not None:
                    on_chain(chain)
            charge_usage(usage)
            telemetry.set_attributes(span, {**telemetry.usage_attributes(usage),
                                            "magicore.answers": [str(c.answer) for c in chains]})  # fmt: skip
        return SolverResult(chains=chains, usage=usage, family=family)


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class CachedReward(RewardModel):
    """A reward model whose scores are kept per (question, chain) in `scores.jsonl`; a cached
    score is charged the usage it cost when computed. Without `out` (a Ray worker, which writes
    nothing) the scores stay in memory and `take_fresh` hands the new ones to whoever writes them."""

    def __init__(self, inner: RewardModel, out: Path | None):
        self.inner = inner
        self.name = inner.name
        self.log = JsonlLog(Path(out) / SCORES_FILE) if out is not None else None
        self.fresh: list[dict] = []
        entries = self.log.read() if self.log else []
        self.cache: dict[str, dict] = {e["key"]: e for e in entries if e.get("reward") == inner.name}

    def take_fresh(self) -> list[dict]:
        """The scores computed since the last call (kept in memory only)."""
        fresh, self.fresh = self.fresh, []
        return fresh

    async def _cached(self, key: str, compute):
        hit = self.cache.get(key)
        if hit is not None:
            charge_usage(_usage(hit["usage"]))
            return hit["value"], hit["parts"]
        with track_usage() as used:
            value, parts = await compute()
        entry = {"key": key, "reward": self.name, "value": value, "parts": parts, "usage": usage_dict(used)}
        self.cache[key] = entry
        if self.log is not None:
            self.log.append(entry)
        else:
            self.fresh.append(entry)
        return value, parts

    async def aprepare(self, question, chains) -> None:
        todo = [steps for steps in chains if _key("steps", question, *steps) not in self.cache]
        if todo:
            await self.inner.aprepare(question, todo)

    async def ascore_steps_detailed(self, question, steps):
        return await self._cached(_key("steps", question, *steps),
                                  lambda: self.inner.ascore_steps_detailed(question, steps))  # fmt: skip

    async def ascore_outcome_detailed(self, question, solution):
        return await self._cached(_key("outcome", question, solution),
                                  lambda: self.inner.ascore_outcome_detailed(question, solution))  # fmt: skip

    async def ascore_steps(self, question, steps):
        return (await self.ascore_steps_detailed(question, steps))[0]

    async def ascore_outcome(self, question, solution):
        return (await self.ascore_outcome_detailed(question, solution))[0]

    async def aclose(self) -> None:
        await self.inner.aclose()


class ScoreLog:
    """`scores.jsonl` as the Ray driver writes it: the scores its workers computed, each
    (reward, key) once."""

    def __init__(self, out: Path):
        self.log = JsonlLog(Path(out) / SCORES_FILE)
        self.seen = {(e.get("reward"), e.get("key")) for e in self.log.read()}

    def add(self, entries: Sequence[dict]) -> None:
        for entry in entries:
            if (entry.get("reward"), entry.get("key")) not in self.seen:
                self.seen.add((entry.get("reward"), entry.get("key")))
                self.log.append(entry)
