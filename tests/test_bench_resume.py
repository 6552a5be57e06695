"""`magicore bench` killed (SIGKILL) at every node boundary, then resumed: every problem is logged
exactly once, with the records and calibration of an uninterrupted run, and no problem whose
chains were stored is sampled again. Also the unit tests of `thread_state` (scripted models).

A boundary is each save the checkpointer makes: a node's writes (stored as soon as the node
ends) and each checkpoint (stored when the step ends). A kill just after the writes and before
the checkpoint is the case a snapshot's `next` does not show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from magicore.evals import bench_magicore
from magicore.evals.bench import BenchSettings, JsonlLog, Models, run_bench
from magicore.evals.datasets import Problem
from magicore.evals.thread_state import thread_state
from magicore.graphs.build import build_graph
from magicore.graphs.checkpoint import sqlite_checkpointer
from tests.fakes import RoleScriptedModel, bench_problems, solution

# Two easy problems and one hard one (four different answers, far below the batch's first
# chains), so a run passes through every node: solve, score, aggregate, route, review, refine,
# finish.
HARD = "p1"
PROBLEMS, ANSWERS, REWARD = bench_problems(3, HARD)
CONFIG = "magicore@4"
SETTINGS = dict(dataset="t", methods=[CONFIG], k=4, rounds=1, model="scripted", reward="fake", concurrency=1)


def _problem(messages) -> Problem:
    return next(p for p in PROBLEMS if p.question in str(messages[-1].content))


def scripted() -> RoleScriptedModel:
    seen: dict[str, int] = {}

    def solver(_n, messages):
        p = _problem(messages)
        seen[p.id] = seen.get(p.id, 0) + 1
        return solution(ANSWERS[p.id][(seen[p.id] - 1) % 4])

    return RoleScriptedModel({
        "solver": solver,
        "reviewer": lambda _n, _m: "Step 2 is wrong: recompute it.",
        "refiner": lambda _n, m: solution(_problem(m).answer),
    })  # fmt: skip


def _run(out, model) -> dict:
    settings = BenchSettings(**SETTINGS)
    return asyncio.run(run_bench(PROBLEMS, settings, Models(model, reward=REWARD), out,
                                 progress=False, log=lambda _t: None))[CONFIG]  # fmt: skip


def _saves_then_kill(kill_at: int | None, events_path) -> None:
    """Make the bench's checkpointer note every save in `events_path` and SIGKILL the process
    right after save number `kill_at` is committed."""
    count = 0

    @contextlib.asynccontextmanager
    async def killing_checkpointer(path):
        async with sqlite_checkpointer(path) as saver:
            put, put_writes = saver.aput, saver.aput_writes

            def saved(label: str) -> None:
                nonlocal count
                count += 1
                with open(events_path, "a") as f:
                    f.write(label + "\n")
                if count == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

            async def aput(config, checkpoint, metadata, new_versions):
                result = await put(config, checkpoint, metadata, new_versions)
                saved(f"checkpoint {config['configurable']['thread_id']} step {metadata.get('step')}")
                return result

            async def aput_writes(config, writes, task_id, task_path=""):
                await put_writes(config, writes, task_id, task_path)
                channels = ",".join(sorted({c for c, _ in writes}))
                saved(f"writes {config['configurable']['thread_id']} {task_path or task_id} [{channels}]")

            saver.aput, saver.aput_writes = aput, aput_writes
            yield saver

    bench_magicore.sqlite_checkpointer = killing_checkpointer


def _child(out, kill_at, events_path) -> None:
    _saves_then_kill(kill_at, events_path)
    _run(out, scripted())
    os._exit(0)


def _fork(out, kill_at, events_path) -> int:
    process = multiprocessing.get_context("fork").Process(target=_child, args=(out, kill_at, events_path))
    process.start()
    process.join(60)
    assert process.exitcode is not None, "the benchmark hung"
    return process.exitcode


def _comparable(record: dict) -> dict:
    keys = ("answer", "correct", "hard", "rounds", "calibration", "votes", "llm_calls", "requests", "error")
    return {key: record[key] for key in keys}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its records, its calibration and the list of its saves."""
    out = tmp_path_factory.mktemp("reference")
    events = out / "saves.txt"
    assert _fork(out / "run", None, events) == 0
    records = {r["id"]: _comparable(r) for r in JsonlLog(out / "run" / f"{CONFIG}.jsonl").read()}
    assert records[HARD]["hard"] is True and records[HARD]["rounds"] == 1
    assert [records[p.id]["hard"] for p in PROBLEMS].count(True) == 1
    calibration = json.loads((out / "run" / f"{CONFIG}.calibration.json").read_text())
    return records, calibration, events.read_text().splitlines()


def test_every_node_boundary_is_a_save(reference):
    _records, _calibration, saves = reference
    writes = [line for line in saves if line.startswith("writes")]
    for node in ("__start__", "solve", "score", "aggregate", "route", "finish"):
        assert any(f"__pregel_pull, {node} [" in line for line in writes), node
    assert sum("__pregel_push" in line and "reviews" in line for line in writes) == 4  # review, per chain
    assert sum("__pregel_push" in line and "refinements" in line for line in writes) == 4  # refine
    # steps -1..6 of each easy problem, -1..11 of the refined one
    assert sum(line.startswith("checkpoint") for line in saves) == 2 * 8 + 13


@pytest.mark.slow
def test_a_kill_at_every_node_boundary_resumes_exactly(reference, tmp_path):
    records, calibration, saves = reference
    failures = []
    for kill_at in range(1, len(saves) + 1):
        out = tmp_path / f"kill{kill_at}"
        code = _fork(out, kill_at, tmp_path / f"saves{kill_at}.txt")
        assert code == -signal.SIGKILL, f"save {kill_at} ({saves[kill_at - 1]}): the run was not killed"
        stored = (tmp_path / f"saves{kill_at}.txt").read_text()
        sampled = {p.id for p in PROBLEMS if f"writes {CONFIG}:problem:{p.id} ~__pregel_pull, solve [" in stored}
        again = scripted()
        resumed = _run(out, again)
        lines = JsonlLog(out / f"{CONFIG}.jsonl").read()
        resampled = {_problem(m).id for m in again.calls("solver")} & sampled
        got = {r["id"]: _comparable(r) for r in lines}
        problems = []
        if sorted(r["id"] for r in lines) != sorted(p.id for p in PROBLEMS):
            problems.append(f"logged {sorted(r['id'] for r in lines)}")
        if resampled:
            problems.append(f"sampled {sorted(resampled)} again")
        if got != records or {i: _comparable(r) for i, r in resumed.items()} != records:
            problems.append(f"records differ: {got} vs {records}")
        if json.loads((out / f"{CONFIG}.calibration.json").read_text()) != calibration:
            problems.append("calibration differs")
        if problems:
            failures.append(f"kill after save {kill_at} ({saves[kill_at - 1]}): " + "; ".join(problems))
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- thread_state


def _graph(checkpointer, interrupt=None):
    return build_graph("magicore", model=scripted(), reward=REWARD, checkpointer=checkpointer,
                       interrupt_before=interrupt, saved_calibration=False,
                       config=BenchSettings(**SETTINGS).method_config())  # fmt: skip


def test_thread_state_of_a_new_a_paused_and_a_finished_thread():
    async def main():
        saver = InMemorySaver()
        pause, graph = _graph(saver, ["route"]), _graph(saver)
        config = {"configurable": {"thread_id": "p0"}}
        assert thread_state(await graph.aget_state(config), pause="route", passed="route").stage == "new"
        await pause.ainvoke({"question": PROBLEMS[0].question}, config)
        paused = thread_state(await graph.aget_state(config), pause="route", passed="route")
        assert paused.stage == "paused" and paused.waiting == ("route",) and not paused.passed_pause
        await graph.ainvoke(None, config)
        done = thread_state(await graph.aget_state(config), pause="route", passed="route")
        assert done.stage == "done" and done.passed_pause

    asyncio.run(main())


def test_thread_state_sees_stored_writes_that_next_leaves_out():
    """Writes stored without the checkpoint that follows them: `next` is empty, yet the thread
    is running, and resuming it does not run the node that wrote them again."""

    class LosesCheckpoints(InMemorySaver):
        drop = False

        async def aput(self, config, checkpoint, metadata, new_versions):
            if self.drop:
                raise asyncio.CancelledError  # the process "dies" before the checkpoint is saved
            return await super().aput(config, checkpoint, metadata, new_versions)

    async def main():
        saver = LosesCheckpoints()
        model = scripted()
        graph = build_graph("magicore", model=model, reward=REWARD, checkpointer=saver, saved_calibration=False,
                            config=BenchSettings(**SETTINGS).method_config())  # fmt: skip
        config = {"configurable": {"thread_id": "p0"}}
        solved = asyncio.Event()

        async def run():
            async for _ in graph.astream({"question": PROBLEMS[0].question}, config, stream_mode="updates"):
                if not solved.is_set():
                    saver.drop = True
                    solved.set()

        with contextlib.suppress(asyncio.CancelledError):
            await run()
        snapshot = await graph.aget_state(config)
        assert snapshot.next == () and snapshot.values.get("pending")  # what misled the bench
        state = thread_state(snapshot, pause="route", passed="route")
        assert state.stage == "running" and state.waiting == () and not state.passed_pause
        saver.drop = False
        calls = len(model.calls("solver"))
        await graph.ainvoke(None, config)
        assert len(model.calls("solver")) == calls  # the stored chains are scored, not sampled again
        assert thread_state(await graph.aget_state(config)).stage == "done"

    asyncio.run(main())
