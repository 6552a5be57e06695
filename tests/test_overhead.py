"""The overhead benchmark as a smoke test: a small N against the mock server in its own process.
The figures are printed (run pytest -s to see them), not asserted: they depend on the machine."""

from __future__ import annotations

import pytest

from magicore.evals.overhead import Timing, makespan, waves_of
from magicore.graphs.result import RunResult
from magicore.ui.cli import main


def test_makespan_schedules_problems_first_come_first_served():
    assert makespan([1.0] * 5, 2) == 3.0
    assert makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert makespan([], 4) == 0.0


def test_waves_follow_each_method_sequential_structure():
    usage = {"solver": {"requests": 1}, "reviewer": {"requests": 16}, "refiner": {"requests": 16}}
    magicore = RunResult(question="q", answer="1", method="magicore", rounds=2, usage_by_role=usage)
    assert waves_of("magicore", magicore) == [("solver", 1), ("reviewer", 8), ("reviewer", 8),
                                              ("refiner", 8), ("refiner", 8)]  # fmt: skip
    refine = RunResult(question="q", answer="1", method="self-refine",
                       usage_by_role={"solver": {"requests": 1}, "reviewer": {"requests": 2},
                                      "refiner": {"requests": 1}})  # fmt: skip
    assert len(waves_of("self-refine", refine)) == 4
    judged = RunResult(question="q", answer="1", method="bok",
                       usage_by_role={"solver": {"requests": 1}, "reward": {"requests": 24}})  # fmt: skip
    assert waves_of("bok", judged) == [("solver", 1), ("reward", 24)]
    assert Timing(0.2, 100.0, 16).call("reward") == pytest.approx(0.21)


def test_bench_overhead_smoke(capsys):
    code = main(["bench-overhead", "--latency", "0.02", "--problems", "2", "--concurrency", "2", "-k", "4",
                 "--rounds", "1", "--k-values", "1,4", "--concurrency-values", "1,2", "--sweep-k", "4"])  # fmt: skip
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0
    for heading in ("### Methods", "### Wall time against k", "### Wall time against concurrent problems"):
        assert heading in printed
    for method in ("magicore", "sc", "bok", "self-refine"):
        assert f"| {method} | {method} | 4 | 2 | 2 |" in printed
    assert "Plain aiohttp" in printed
    assert "client in-flight bound for a vllm server: 256 (halved on 429/503, then back up to 256)" in printed
    assert "| in-flight bound (peak) |" in printed and "| 256 (8) |" in printed  # magicore's 2 x 4 reviews
    assert "| raw floor s | wall / floor |" in printed
