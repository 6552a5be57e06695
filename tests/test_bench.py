"""The benchmark harness on a 5-problem slice with scripted models: records, report, batch
calibration, resume after an interruption, errors, the CLI."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from magicore.evals.bench import BenchSettings, JsonlLog, Models, load_results, run_bench
from magicore.evals.datasets import Problem
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.evals.report import summaries, wilson_interval, write_report
from magicore.tools.errors import InputError
from magicore.ui.cli import main
from tests.fakes import FakeAnswerReward, RoleScriptedModel, solution

# Four easy problems (every chain right, high reward) and one hard one: four different answers,
# the first ("5") the best of its own chains but far below the batch's first chains. Under the
# batch calibration it is hard (cond1 fails, the vote is spread); under its own chains it is not.
PROBLEMS = [Problem(id=f"p{i}", question=f"Question {i}: what is the number?", answer=str(10 + i), dataset="t")
            for i in range(5)]  # fmt: skip
HARD = "p2"
ANSWERS = {p.id: [p.answer] * 4 for p in PROBLEMS} | {HARD: ["5", "6", "7", "9"]}
REWARD = FakeAnswerReward({**{p.answer: (0.9, 0.9) for p in PROBLEMS},
                           "5": (0.4, 0.4), "6": (0.2, 0.2), "7": (0.2, 0.2), "9": (0.2, 0.2)})  # fmt: skip


def problem_of(messages) -> Problem:
    text = str(messages[-1].content)
    return next(p for p in PROBLEMS if p.question in text)


def scripted(fail: set[str] = frozenset()):
    """Solver chain j of a problem answers ANSWERS[id][j]; the refiner fixes it; a problem in
    `fail` makes every solver call raise."""
    seen: dict[str, int] = {}

    def solver(_n, messages):
        p = problem_of(messages)
        if p.id in fail:
            return RuntimeError(f"model server down for {p.id}")
        j = seen.get(p.id, 0)
        seen[p.id] = j + 1
        return solution(ANSWERS[p.id][j % 4])

    def refiner(_n, messages):
        return solution(problem_of(messages).answer)

    return RoleScriptedModel({
        "solver": solver,
        "reviewer": lambda _n, _m: "Step 2 is wrong: recompute it.",
        "refiner": refiner,
        "feedback": lambda _n, _m: "The solution is correct.",
        "revise": refiner,
    })


def settings(methods=("magicore", "sc", "bok", "self-refine"), **kw) -> BenchSettings:
    base = dict(dataset="t", methods=list(methods), k=4, rounds=2, model="scripted", reward="fake", concurrency=2)
    return BenchSettings(**{**base, **kw})


def bench(out, model, methods=("magicore", "sc", "bok", "self-refine"), problems=PROBLEMS, **kw):
    retry = kw.pop("retry_errors", False)
    return asyncio.run(run_bench(problems, settings(methods, **kw), Models(model, reward=REWARD), out,
                                 retry_errors=retry, progress=False, log=lambda _t: None))  # fmt: skip


def test_wilson_interval():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(7, 7)[1] == 1.0


def test_the_plot_takes_0_and_100_percent(tmp_path):
    from magicore.evals.report import plot_accuracy_vs_calls, summarize

    rows = [summarize("sc", [{"correct": False, "llm_calls": 4}] * 7),
            summarize("bok", [{"correct": True, "llm_calls": 4}] * 12)]  # fmt: skip
    assert plot_accuracy_vs_calls(rows, tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


def test_every_method_runs_the_same_problems_and_the_report_says_so(tmp_path):
    results = bench(tmp_path, scripted())
    assert set(results) == {"magicore", "sc", "bok", "self-refine"}
    for method, records in results.items():
        assert sorted(records) == [p.id for p in PROBLEMS], method
        for r in records.values():
            assert r["error"] is None and r["seconds"] >= 0 and r["llm_calls"] > 0
            assert {"question", "gold", "answer", "correct", "input_tokens", "output_tokens", "hard", "rounds"} <= set(r)
    # SC and BoK: the hard problem's answer is wrong (all different, "5" first / best), the rest right
    assert sum(r["correct"] for r in results["sc"].values()) == 4
    assert results["bok"][HARD]["answer"] == "5"
    # MAgICoRe refines the hard problem to the right answer: 5/5, one problem routed hard
    mg = results["magicore"]
    assert all(r["correct"] for r in mg.values())
    assert [r["hard"] for r in mg.values()].count(True) == 1 and mg[HARD]["hard"] and mg[HARD]["rounds"] == 1
    assert mg[HARD]["llm_calls"] == 4 + 4 + 4 and mg["p0"]["llm_calls"] == 4

    text = write_report(tmp_path)
    assert "| magicore | 5 | 100.0% (5/5) | 56.6-100.0% | 0 | 5.6 |" in text
    assert "| sc | 5 | 80.0% (4/5) | 37.6-96.4% | 0 | 4.0 |" in text
    assert "| 20% | 0.20 |" in text  # magicore: share routed hard, mean rounds
    assert "mu = 1.6000, sigma = 0.4000, n = 5" in text
    png = (tmp_path / "accuracy_vs_calls.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (tmp_path / "report.md").read_text() == text


def test_batch_calibration_comes_from_the_first_chain_of_every_problem(tmp_path):
    bench(tmp_path / "batch", scripted(), methods=["magicore"])
    cal = json.loads((tmp_path / "batch" / "calibration.json").read_text())
    firsts = [1.8, 1.8, 0.8, 1.8, 1.8]  # R = ORM + prod(steps) of each problem's first chain
    mu = sum(firsts) / 5
    assert cal["mu"] == pytest.approx(mu) and cal["n"] == 5 and cal["missing"] == 0
    assert cal["sigma"] == pytest.approx(math.sqrt(sum((r - mu) ** 2 for r in firsts) / 5))
    records = load_results(tmp_path / "batch", "magicore")
    assert {r["calibration"] for r in records.values()} == {"batch"}
    assert records[HARD]["hard"] is True
    # the same problem against its own chains is easy: the batch's mu/sigma is what routed it
    own = bench(tmp_path / "self", scripted(), methods=["magicore"], calibration="self")["magicore"]
    assert own[HARD]["hard"] is False and own[HARD]["calibration"] == "self"


def _interrupt_after(out, method, finished, coro):
    """Run `coro` and cancel it (as Ctrl-C does to asyncio.run) once `finished` records exist."""

    async def runner():
        task = asyncio.ensure_future(coro)
        while not task.done():
            if len(JsonlLog(out / f"{method}.jsonl").read()) >= finished:
                task.cancel()
                break
            await asyncio.sleep(0.001)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(runner())


def test_an_interrupted_run_resumes_with_only_the_remaining_problems(tmp_path):
    slow = scripted()
    slow.delay = 0.05
    coro = run_bench(PROBLEMS, settings(["sc"], concurrency=1), Models(slow, reward=REWARD), tmp_path,
                     progress=False, log=lambda _t: None)  # fmt: skip
    _interrupt_after(tmp_path, "sc", 3, coro)
    assert len(load_results(tmp_path, "sc")) == 3
    again = scripted()
    records = bench(tmp_path, again, methods=["sc"], concurrency=1)["sc"]
    assert len(again.calls("solver")) == 2 * 4  # k=4 chains for each of the two remaining problems
    assert sorted(records) == [p.id for p in PROBLEMS]
    lines = JsonlLog(tmp_path / "sc.jsonl").read()
    assert len(lines) == 5 and len({r["id"] for r in lines}) == 5
    [row] = summaries(tmp_path)
    assert row.n == 5 and row.correct == 4 and row.llm_calls == 4.0


def test_magicore_resumes_from_its_checkpoints_with_the_same_calibration(tmp_path):
    slow = scripted()
    slow.delay = 0.05
    coro = run_bench(PROBLEMS, settings(["magicore"], concurrency=1), Models(slow, reward=REWARD), tmp_path,
                     progress=False, log=lambda _t: None)  # fmt: skip
    _interrupt_after(tmp_path, "magicore", 2, coro)
    cal_before = (tmp_path / "calibration.json").read_text()
    assert 2 <= len(load_results(tmp_path, "magicore")) < 5
    again = scripted()
    records = bench(tmp_path, again, methods=["magicore"], concurrency=1)["magicore"]
    assert again.calls("solver") == []  # phase 1 is in the checkpoints: nothing sampled again
    assert (tmp_path / "calibration.json").read_text() == cal_before
    assert sorted(records) == [p.id for p in PROBLEMS] and all(r["correct"] for r in records.values())
    assert records[HARD]["hard"] is True


def test_a_failing_problem_is_recorded_as_an_error_and_can_be_retried(tmp_path):
    results = bench(tmp_path, scripted(fail={"p3"}), methods=["sc", "magicore"])
    for method in ("sc", "magicore"):
        bad = results[method]["p3"]
        assert bad["correct"] is False and bad["answer"] is None
        assert "model server down for p3" in bad["error"]
        assert sum(r["error"] is None for r in results[method].values()) == 4
    cal = json.loads((tmp_path / "calibration.json").read_text())
    assert cal["n"] == 4 and cal["missing"] == 1
    text = write_report(tmp_path, plot=False)
    assert "| sc | 5 | 60.0% (3/5) |" in text and "| 1 |" in text  # errors column

    rerun = scripted()  # a rerun skips the recorded error...
    bench(tmp_path, rerun, methods=["sc", "magicore"])
    assert rerun.calls("solver") == []
    fixed = scripted()  # ...unless asked to retry it
    results = bench(tmp_path, fixed, methods=["sc", "magicore"], retry_errors=True)
    assert len(fixed.calls("solver")) == 2 * 4  # p3's k=4 chains, once per method
    assert results["sc"]["p3"]["error"] is None and results["magicore"]["p3"]["correct"] is True
    assert results["magicore"]["p3"]["calibration"] == "batch"


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    bench(tmp_path, scripted(), methods=["sc"])
    with pytest.raises(InputError, match="other settings .*k 4 there vs 8 now"):
        bench(tmp_path, scripted(), methods=["sc"], k=8)
    bench(tmp_path, scripted(), methods=["bok"])  # adding a method is fine
    assert json.loads((tmp_path / "run.json").read_text())["methods"] == ["sc", "bok"]


def test_a_torn_last_line_is_dropped_and_cut(tmp_path):
    log = JsonlLog(tmp_path / "x.jsonl")
    log.append({"id": "a"})
    with open(log.path, "a") as f:
        f.write('{"id": "b", "answ')  # a crash mid-write
    assert log.read() == [{"id": "a"}]
    log.append({"id": "c"})
    assert log.read() == [{"id": "a"}, {"id": "c"}]


def test_cli_bench_against_an_openai_compatible_server_and_report_only(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"ID": f"chal-{i}", "Body": f"Tom has {i} apples and buys {42 - i} more.", "Question": "How many?",
             "Equation": f"( {i} + {42 - i} )", "Answer": 42.0 if i % 2 else 41.0, "Type": "Addition"}
            for i in range(1, 6)]  # fmt: skip
    (data / "svamp.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    with MockServer(MockSettings()) as server:  # every reply answers 42
        args = ["bench", "--dataset", "svamp", "--data", str(data), "--subset", "single-op", "--limit", "5",
                "--methods", "sc,magicore", "-k", "3", "--model", f"mock@{server.base_url}", "--reward", "const:0.5",
                "--out", str(out), "--no-progress"]  # fmt: skip
        assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| sc | 5 | 60.0% (3/5) |" in printed and "| magicore | 5 | 60.0% (3/5) |" in printed
    assert (out / "report.md").exists() and (out / "accuracy_vs_calls.png").exists()
    (out / "report.md").unlink()
    assert main(["bench", "--report-only", "--out", str(out), "--no-plot"]) == 0
    assert "| sc | 5 | 60.0% (3/5) |" in (out / "report.md").read_text()
    assert main(["bench", "--report-only", "--out", str(tmp_path / "nothing")]) == 2  # a usage error
