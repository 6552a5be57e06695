"""A Ray worker of `magicore bench --engine ray`: an async actor that runs one problem at a time
per call, many calls at once on its own event loop, with its own models and in-flight bounds.

It writes nothing: every call returns a record (or a problem's sampled chains, or MAgICoRe's
paused state), with the reward scores it computed, to the driver, evals/bench_ray.py, which owns the store. Phase 0 samples a
problem's missing chains; every other call gets the problem's stored chains and replays them. Phase 1 and phase 2 of MAgICoRe's batch calibration
are separate calls, so the driver can compute mu/sigma over every worker's first chains in
between. The graphs checkpoint in memory: a worker keeps nothing a rerun needs. Imports graphs,
agents, tools; never ui.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

from magicore.evals.bench_magicore import _inputs
from magicore.evals.bench_store import make_record
from magicore.evals.datasets import Problem
from magicore.graphs.state import Calibration

#: MAgICoRe's batch run pauses before this node.
PAUSE_BEFORE = "route"


@dataclass
class WorkerSpecs:
    """What a worker builds its models from: specs, never model objects (they hold clients)."""

    model: str
    reward: str
    reviewer_model: str | None = None
    refiner_model: str | None = None
    timeout: float | None = None
    max_tokens: int | None = None


def thread_config(problem: Problem, label: str) -> dict:
    """The same thread id the local engine's checkpoints use."""
    from magicore.evals.bench_magicore import _thread

    return _thread(problem, label)


class BenchWorker:
    """Made remote by evals/bench_ray.py (`ray.remote(BenchWorker)`); plain Python otherwise.

    Every call that runs a configuration gets the problem's stored chains (from the driver's
    samples.jsonl) and replays them, as the local engine does."""

    def __init__(self, specs: WorkerSpecs, config_values: dict):
        self.specs = specs
        self.config_values = config_values
        self._models = None
        self._graphs: dict[tuple, object] = {}
        self._samples = None
        self._replay = None

    async def pid(self) -> int:
        return os.getpid()

    async def start(self) -> str:
        """Build the models (imports included) before the first problem; the id of the Ray node."""
        import ray

        self._roles()
        return ray.get_runtime_context().get_node_id()

    def _roles(self):
        if self._models is None:
            from magicore.agents.backends import chat_model, resolve_spec
            from magicore.evals.paired import CachedReward, ReplaySolver, StoredChains
            from magicore.graphs.build import resolve_reward

            made: dict[str, object] = {}

            def make(spec: str | None):
                spec = spec or self.specs.model
                if spec not in made:
                    kwargs = {"max_tokens": self.specs.max_tokens}
                    if self.specs.timeout:
                        kwargs["timeout"] = self.specs.timeout
                    made[spec] = chat_model(resolve_spec(python_arg=spec), **kwargs)
                return made[spec]

            solver = make(self.specs.model)
            self._models = (solver, make(self.specs.reviewer_model), make(self.specs.refiner_model),
                            CachedReward(resolve_reward(self.specs.reward, solver), None))  # fmt: skip
            self._samples = StoredChains()
            self._replay = ReplaySolver(self._samples, [], model=solver)
        return self._models

    @contextmanager
    def _chains(self, problem: Problem, chains: list[dict]):
        """`problem`'s stored chains, replayed by every graph of this worker during the call."""
        self._roles()
        self._samples.put(problem.id, chains)
        self._replay.know(problem)
        try:
            yield
        finally:
            self._samples.drop(problem.id)

    def _graph(self, method: str, k: int, calibration: Calibration | None = None, pause: bool = False,
               route: str = "adaptive"):  # fmt: skip
        key = (method, k, calibration.model_dump_json() if calibration else None, pause, route)
        if key not in self._graphs:
            from magicore.evals.bench import baseline_graph, self_refine_graphs
            from magicore.evals.paired import MethodRun

            solver, reviewer, refiner, reward = self._roles()
            run = MethodRun(method, k)
            if method == "self-refine":
                self._graphs[key] = self_refine_graphs(run, self.config_values, solver, self._replay)
            elif method != "magicore":
                self._graphs[key] = baseline_graph(run, self.config_values, solver, reward, self._replay)
            else:
                from langgraph.checkpoint.memory import InMemorySaver
                from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

                from magicore.graphs.build import build_graph
                from magicore.graphs.checkpoint import STATE_TYPES
                from magicore.graphs.config import MethodConfig

                saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))
                self._graphs[key] = build_graph(
                    method, model=solver, reviewer_model=reviewer, refiner_model=refiner, reward=reward,
                    config=MethodConfig(**{**self.config_values, "k": k}, calibration=calibration, route=route),
                    checkpointer=saver, interrupt_before=[PAUSE_BEFORE] if pause else None,
                    saved_calibration=False, solver=self._replay,
                )  # fmt: skip
        return self._graphs[key]

    async def sample(self, problem: Problem, entry: dict | None, k: int, sample_seed: int) -> dict:
        """Phase 0 for one problem: its samples.jsonl entry with `k` chains (`entry`'s and the
        missing ones), or {"error": why}."""
        from magicore.evals.bench import sampling_solver
        from magicore.evals.paired import sample_missing

        try:
            solver = sampling_solver(self._roles()[0], self.config_values)
            return await sample_missing(solver, problem, entry, k, sample_seed)
        except Exception as error:  # one failing problem must not end the batch; a rerun retries it
            return {"error": str(error) or type(error).__name__}

    async def run(self, method: str, k: int, problem: Problem, chains: list[dict],
                  calibration: Calibration | None = None, route: str = "adaptive") -> dict:  # fmt: skip
        """One problem start to end on its stored chains: a baseline, Self-Refine, or MAgICoRe
        with a fixed or its own calibration; {"record", "scores": the reward scores computed}."""
        from magicore.evals.bench import solve_baseline, solve_self_refine
        from magicore.evals.paired import MethodRun

        run = MethodRun(method, k, route)
        with self._chains(problem, chains):
            if method == "self-refine":
                record = await solve_self_refine(run, problem, self._roles()[0], self._graph(method, k))
            elif method != "magicore":
                record = await solve_baseline(run, problem, self._roles()[0], self._graph(method, k))
            else:
                record = await self._magicore(run, problem, calibration)
        return {"record": record, "scores": self._roles()[3].take_fresh()}

    async def _magicore(self, run, problem: Problem, calibration: Calibration | None) -> dict:
        """MAgICoRe with a fixed or its own calibration, start to end: the record."""
        from magicore.evals.bench_magicore import _stream
        from magicore.graphs.api import result_from_state

        started = time.perf_counter()
        try:
            graph = self._graph("magicore", run.k, calibration, route=run.route)
            config = thread_config(problem, run.label)
            try:
                state = await _stream(graph, _inputs(problem), config)
            finally:
                await graph.checkpointer.adelete_thread(config["configurable"]["thread_id"])
            seconds = time.perf_counter() - started
            result = result_from_state(problem.question, "magicore", state, seconds)
            return make_record(problem, "magicore", result, seconds, config=run.label, k=run.k)
        except Exception as error:  # one failing problem must not end the batch
            return make_record(problem, "magicore", None, time.perf_counter() - started, error,
                               config=run.label, k=run.k)  # fmt: skip

    async def phase1(self, k: int, problem: Problem, chains: list[dict], route: str = "adaptive") -> dict:
        """MAgICoRe@k up to just before "route": {"saved": the paused checkpoint, "first": the
        first chain's entry, "seconds"}, or {"error": record}."""
        from magicore.evals.bench_magicore import _stream, first_chain
        from magicore.graphs.routing import reward as chain_reward

        from magicore.evals.paired import MethodRun

        label = MethodRun("magicore", k, route).label
        started = time.perf_counter()
        config = thread_config(problem, label)
        with self._chains(problem, chains):
            graph = self._graph("magicore", k, pause=True, route=route)
            try:
                await _stream(graph, _inputs(problem), config)
                seconds = time.perf_counter() - started
                chain = await first_chain(graph, config)
                first = None
                if chain is not None:
                    first = {"id": problem.id, "reward": chain_reward(chain), "orm": chain.orm,
                             "step_scores": chain.step_scores, "answer": chain.answer, "seconds": round(seconds, 3)}  # fmt: skip
                return {"saved": await export_checkpoint(graph.checkpointer, config), "first": first,
                        "seconds": seconds, "scores": self._roles()[3].take_fresh()}  # fmt: skip
            except Exception as error:
                return {"error": make_record(problem, "magicore", None, time.perf_counter() - started, error,
                                             config=label, k=k), "scores": self._roles()[3].take_fresh()}  # fmt: skip
            finally:
                await graph.checkpointer.adelete_thread(config["configurable"]["thread_id"])

    async def phase2(self, k: int, problem: Problem, chains: list[dict], saved: dict, calibration: Calibration,
                     spent: float, route: str = "adaptive") -> dict:  # fmt: skip
        """MAgICoRe@k from its paused checkpoint with the batch calibration, to the end, exactly
        as the local engine resumes it: {"record", "scores": the reward scores computed}."""
        from magicore.evals.bench_magicore import _stream
        from magicore.graphs.api import result_from_state

        from magicore.evals.paired import MethodRun

        label = MethodRun("magicore", k, route).label
        started = time.perf_counter()
        config = thread_config(problem, label)
        with self._chains(problem, chains):
            graph = self._graph("magicore", k, route=route)
            try:
                await import_checkpoint(graph.checkpointer, config, saved)
                await graph.aupdate_state(config, {"calibration": calibration})
                state = await _stream(graph, None, config)
                seconds = spent + time.perf_counter() - started
                result = result_from_state(problem.question, "magicore", state, seconds)
                record = make_record(problem, "magicore", result, seconds, config=label, k=k)
            except Exception as error:
                record = make_record(problem, "magicore", None, spent + time.perf_counter() - started, error,
                                     config=label, k=k)  # fmt: skip
            finally:
                await graph.checkpointer.adelete_thread(config["configurable"]["thread_id"])
        return {"record": record, "scores": self._roles()[3].take_fresh()}


async def export_checkpoint(saver, config: dict) -> dict:
    """A thread's latest checkpoint as it is stored (values, versions, metadata, pending writes),
    to be put into another checkpointer unchanged: a state rebuilt with `update_state` would
    not resume the same way (LangGraph infers the next node from the versions each node saw)."""
    saved = await saver.aget_tuple(config)
    return {"checkpoint": saved.checkpoint, "metadata": saved.metadata, "writes": list(saved.pending_writes or [])}


async def import_checkpoint(saver, config: dict, saved: dict) -> None:
    """Make `saved` (from `export_checkpoint`) the only checkpoint of the config's thread."""
    thread_id = config["configurable"]["thread_id"]
    await saver.adelete_thread(thread_id)
    checkpoint = saved["checkpoint"]
    target = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    target = await saver.aput(target, checkpoint, saved["metadata"], dict(checkpoint["channel_versions"]))
    by_task: dict[str, list] = {}
    for task_id, channel, value in saved["writes"]:
        by_task.setdefault(task_id, []).append((channel, value))
    for task_id, writes in by_task.items():
        await saver.aput_writes(target, writes, task_id)
