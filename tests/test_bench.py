"""The benchmark harness on a 5-problem slice with scripted models: paired samples, records,
report, batch calibration, resume after an interruption, errors, the CLI."""

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
from tests.fakes import RoleScriptedModel, bench_problems, solution

# Four easy problems (every chain right, high reward) and one hard one: four different answers,
# the first ("5") the best of its own chains but far below the batch's first chains. Under the
# batch calibration it is hard (cond1 fails, the vote is spread); under its own chains it is not.
HARD = "p2"
PROBLEMS, ANSWERS, REWARD = bench_problems(5, HARD)


def problem_of(messages) -> Problem:
    text = str(messages[-1].content)
    return next(p for p in PROBLEMS if p.question in text)


def scripted(fail: set[str] = frozenset(), reviewer_down: bool = False):
    """Solver chain j of a problem answers ANSWERS[id][j]; the refiner fixes it; a problem in
    `fail` makes every solver call raise, and `reviewer_down` every reviewer call."""
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
        "reviewer": lambda _n, _m: RuntimeError("reviewer model down") if reviewer_down else "Step 2 is wrong: recompute it.",
        "refiner": refiner,
        "feedback": lambda _n, _m: "The solution is correct.",
        "revise": refiner,
    })


ALL = ("magicore@4", "sc@4", "bok@4", "self-refine@4")


def settings(methods=ALL, **kw) -> BenchSettings:
    base = dict(dataset="t", methods=list(methods), k=4, rounds=2, model="scripted", reward="fake", concurrency=2)
    return BenchSettings(**{**base, **kw})


def bench(out, model, methods=ALL, problems=PROBLEMS, **kw):
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
    from magicore.evals.report import plot_accuracy_vs_cost, summarize

    rows = [summarize("sc@4", [{"correct": False, "llm_calls": 4, "policy_samples": 4}] * 7),
            summarize("bok@4", [{"correct": True, "llm_calls": 4, "policy_samples": 4}] * 12)]  # fmt: skip
    assert plot_accuracy_vs_cost(rows, tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


def test_every_configuration_runs_the_same_problems_and_the_report_says_so(tmp_path):
    model = scripted()
    results = bench(tmp_path, model)
    assert set(results) == set(ALL)
    assert len(model.calls("solver")) == 5 * 4  # sampled once, shared by all four configurations
    for config, records in results.items():
        assert sorted(records) == [p.id for p in PROBLEMS], config
        for r in records.values():
            assert r["error"] is None and r["seconds"] >= 0 and r["llm_calls"] > 0 and r["config"] == config
            assert {"question", "gold", "answer", "correct", "input_tokens", "output_tokens", "hard", "rounds",
                    "usage_by_role", "policy_samples", "judge_calls", "chains", "reviews", "refinements"} <= set(r)
    # SC and BoK: the hard problem's answer is wrong (all different, "5" first / best), the rest right
    assert sum(r["correct"] for r in results["sc@4"].values()) == 4
    assert results["bok@4"][HARD]["answer"] == "5"
    # every configuration saw the same four chains of the hard problem
    assert [c["answer"] for c in results["sc@4"][HARD]["chains"]] == ["5", "6", "7", "9"]
    # MAgICoRe refines the hard problem to the right answer: 5/5, one problem routed hard
    mg = results["magicore@4"]
    assert all(r["correct"] for r in mg.values())
    assert [r["hard"] for r in mg.values()].count(True) == 1 and mg[HARD]["hard"] and mg[HARD]["rounds"] == 1
    # replayed chains are charged what they cost: 4 samples, then 4 reviews and 4 refinements
    assert mg[HARD]["llm_calls"] == 4 + 4 + 4 and mg["p0"]["llm_calls"] == 4
    assert mg[HARD]["policy_samples"] == 12 and mg[HARD]["usage_by_role"]["solver"]["llm_calls"] == 4
    assert len(mg[HARD]["reviews"]) == 4 and len(mg[HARD]["refinements"]) == 4
    assert all(c["step_scores"] and c["orm"] is not None for c in mg[HARD]["chains"])
    # Self-Refine@4 critiques each of the four chains on its own (the scripted feedback accepts
    # every draft) and takes the majority of the four answers: a four-way tie, the first wins
    sr = results["self-refine@4"][HARD]
    assert sr["answer"] == "5" and sr["votes"] == {"5": 1.0, "6": 1.0, "7": 1.0, "9": 1.0}
    assert sr["policy_samples"] == 4 * 2 and {d["chain"] for d in sr["drafts"]} == {0, 1, 2, 3}

    text = write_report(tmp_path)
    assert "| magicore@4 | 5 | 100.0% (5/5) | 56.6-100.0% | 0 | 5.6 |" in text
    assert "| sc@4 | 5 | 80.0% (4/5) | 37.6-96.4% | 0 | 4.0 |" in text
    assert "| 20% | 0.20 | 100% (1/1) | 100% (4/4) |" in text  # routed hard, rounds, accuracy hard / easy
    assert "mu = 1.6000, sigma = 0.4000, n = 5" in text
    assert "| magicore@4 | sc@4 | 5 | +20.0 pts |" in text  # the paired comparison
    png = (tmp_path / "accuracy_vs_cost.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (tmp_path / "report.md").read_text() == text


def test_magicore_all_refines_every_problem_on_the_same_chains_and_reports_the_tests_verdict(tmp_path):
    model = scripted()
    results = bench(tmp_path, model, methods=("magicore@4", "magicore-all@4"))
    assert len(model.calls("solver")) == 5 * 4  # both replay the same samples
    adaptive, forced = results["magicore@4"], results["magicore-all@4"]
    assert {r["config"] for r in forced.values()} == {"magicore-all@4"} and {r["method"] for r in forced.values()} == {"magicore"}
    # every problem is reviewed and refined once; the default refines only the hard one
    assert all(r["rounds"] == 1 and len(r["reviews"]) == 4 and len(r["refinements"]) == 4 for r in forced.values())
    assert sum(r["rounds"] for r in adaptive.values()) == 1
    # `hard` is the test's verdict in both, so the two split their problems alike
    assert {i: r["hard"] for i, r in forced.items()} == {i: r["hard"] for i, r in adaptive.items()}
    assert all(r["correct"] for r in forced.values())
    text = write_report(tmp_path)
    assert "| magicore-all@4 | 5 | 100.0% (5/5) | 56.6-100.0% | 0 | 12.0 |" in text  # 4 samples + 4 reviews + 4 refinements
    assert "| 20% | 1.00 | 100% (1/1) | 100% (4/4) |" in text  # routed hard by the test, one round each
    assert "| magicore@4 | magicore-all@4 | 5 | +0.0 pts |" in text


def test_a_smaller_k_uses_a_prefix_of_the_same_chains_and_a_larger_one_samples_only_the_rest(tmp_path):
    model = scripted()
    results = bench(tmp_path, model, methods=["sc@2", "sc@3"])
    assert len(model.calls("solver")) == 5 * 3
    two, three = results["sc@2"][HARD]["chains"], results["sc@3"][HARD]["chains"]
    assert [c["text"] for c in two] == [c["text"] for c in three[:2]]
    assert results["sc@2"][HARD]["llm_calls"] == 2 and results["sc@3"][HARD]["llm_calls"] == 3
    more = scripted()
    more_results = bench(tmp_path, more, methods=["sc@4"])
    assert len(more.calls("solver")) == 5 * 1  # only chain 4 of each problem is new
    assert [c["text"] for c in more_results["sc@4"][HARD]["chains"][:3]] == [c["text"] for c in three]


def test_batch_calibration_comes_from_the_first_chain_of_every_problem(tmp_path):
    bench(tmp_path / "batch", scripted(), methods=["magicore@4"])
    cal = json.loads((tmp_path / "batch" / "magicore@4.calibration.json").read_text())
    firsts = [1.8, 1.8, 0.8, 1.8, 1.8]  # R = ORM + prod(steps) of each problem's first chain
    mu = sum(firsts) / 5
    assert cal["mu"] == pytest.approx(mu) and cal["n"] == 5 and cal["missing"] == 0
    assert cal["sigma"] == pytest.approx(math.sqrt(sum((r - mu) ** 2 for r in firsts) / 5))
    records = load_results(tmp_path / "batch", "magicore@4")
    assert {r["calibration"] for r in records.values()} == {"batch"}
    assert records[HARD]["hard"] is True
    # the same problem against its own chains is easy: the batch's mu/sigma is what routed it
    own = bench(tmp_path / "self", scripted(), methods=["magicore@4"], calibration="self")["magicore@4"]
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
    coro = run_bench(PROBLEMS, settings(["sc@4"], concurrency=1), Models(slow, reward=REWARD), tmp_path,
                     progress=False, log=lambda _t: None)  # fmt: skip
    _interrupt_after(tmp_path, "samples", 3, coro)
    assert len(JsonlLog(tmp_path / "samples.jsonl").read()) == 3
    again = scripted()
    records = bench(tmp_path, again, methods=["sc@4"], concurrency=1)["sc@4"]
    assert len(again.calls("solver")) == 2 * 4  # k=4 chains for each of the two remaining problems
    assert sorted(records) == [p.id for p in PROBLEMS]
    lines = JsonlLog(tmp_path / "sc@4.jsonl").read()
    assert len(lines) == 5 and len({r["id"] for r in lines}) == 5
    [row] = summaries(tmp_path)
    assert row.n == 5 and row.correct == 4 and row.llm_calls == 4.0


def test_magicore_resumes_from_its_checkpoints_with_the_same_calibration(tmp_path):
    slow = scripted()
    slow.delay = 0.05
    coro = run_bench(PROBLEMS, settings(["magicore@4"], concurrency=1), Models(slow, reward=REWARD), tmp_path,
                     progress=False, log=lambda _t: None)  # fmt: skip
    _interrupt_after(tmp_path, "magicore@4", 2, coro)
    cal_before = (tmp_path / "magicore@4.calibration.json").read_text()
    assert 2 <= len(load_results(tmp_path, "magicore@4")) < 5
    again = scripted()
    records = bench(tmp_path, again, methods=["magicore@4"], concurrency=1)["magicore@4"]
    assert again.calls("solver") == []  # the samples are kept: nothing sampled again
    assert (tmp_path / "magicore@4.calibration.json").read_text() == cal_before
    assert sorted(records) == [p.id for p in PROBLEMS] and all(r["correct"] for r in records.values())
    assert records[HARD]["hard"] is True


def test_the_report_of_a_run_in_progress_says_what_is_recorded_and_shows_no_figures_for_the_rest(tmp_path):
    bench(tmp_path, scripted(), methods=["sc@4"], problems=PROBLEMS[:3])
    settings_file = tmp_path / "run.json"  # the selection is 5 problems; 3 ran; bok@4 has not started
    run = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**run, "problem_ids": [p.id for p in PROBLEMS],
                                         "methods": ["sc@4", "bok@4"]}))  # fmt: skip
    text = write_report(tmp_path, plot=False)
    assert "**partial run**: problems recorded so far out of 5: sc@4 3, bok@4 0" in text
    assert "| sc@4 | 3 | 66.7% (2/3) |" in text  # p2, the hard problem, is wrong
    assert "| bok@4 | 0 | not run yet | - |" in text and "0.0% (0/0)" not in text
    assert "| sc@4 | bok@4 | 0 | no problem finished by both | - |" in text and "+0.0 pts" not in text
    complete = bench(tmp_path / "full", scripted(), methods=["sc@4"])
    assert len(complete["sc@4"]) == 5 and "partial run" not in write_report(tmp_path / "full", plot=False)


def test_a_problem_whose_sampling_fails_waits_for_a_rerun(tmp_path):
    results = bench(tmp_path, scripted(fail={"p3"}), methods=["sc@4", "magicore@4"])
    for config in ("sc@4", "magicore@4"):
        assert "p3" not in results[config] and len(results[config]) == 4
    cal = json.loads((tmp_path / "magicore@4.calibration.json").read_text())
    assert cal["n"] == 4 and cal["missing"] == 1
    fixed = scripted()  # the rerun samples p3 and runs it in every configuration
    results = bench(tmp_path, fixed, methods=["sc@4", "magicore@4"])
    assert len(fixed.calls("solver")) == 4
    assert results["sc@4"]["p3"]["error"] is None and results["magicore@4"]["p3"]["correct"] is True
    assert results["magicore@4"]["p3"]["calibration"] == "batch"


def test_an_interrupted_sampling_samples_again_only_the_chains_it_had_not_got(tmp_path):
    seen: dict[str, int] = {}

    def solver(_n, messages):  # p1's third chain fails, as a server going down would make it
        p = problem_of(messages)
        seen[p.id] = seen.get(p.id, 0) + 1
        return RuntimeError("model server down") if (p.id, seen[p.id]) == ("p1", 3) else solution(f"{seen[p.id]}")

    results = bench(tmp_path, RoleScriptedModel({"solver": solver}), methods=["sc@4"])
    assert "p1" not in results["sc@4"] and len(results["sc@4"]) == 4
    partial = [json.loads(line) for line in (tmp_path / "samples.partial.jsonl").read_text().splitlines()]
    kept = {line["index"]: line["chain"] for line in partial}
    assert {line["id"] for line in partial} == {"p1"} and {0, 1} <= set(kept) and 2 not in kept

    rerun = scripted()
    results = bench(tmp_path, rerun, methods=["sc@4"])
    assert len(rerun.calls("solver")) == 4 - len(kept)  # only the chains it had not got
    entry = next(json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()
                 if json.loads(line)["id"] == "p1")  # fmt: skip
    assert [c["seed"] for c in entry["chains"]] == [0, 1, 2, 3]
    assert all(entry["chains"][i] == chain for i, chain in kept.items())
    assert "p1" in results["sc@4"] and not (tmp_path / "samples.partial.jsonl").exists()


def test_a_failing_problem_is_recorded_as_an_error_and_can_be_retried(tmp_path):
    broken = scripted(reviewer_down=True)
    results = bench(tmp_path, broken, methods=["sc@4", "magicore@4"])
    bad = results["magicore@4"][HARD]
    assert bad["correct"] is False and bad["answer"] is None and "reviewer model down" in bad["error"]
    assert sum(r["error"] is None for r in results["magicore@4"].values()) == 4
    text = write_report(tmp_path, plot=False)
    assert "| magicore@4 | 5 | 80.0% (4/5) | 37.6-96.4% | 1 |" in text  # errors column

    rerun = scripted()  # a rerun skips the recorded error...
    bench(tmp_path, rerun, methods=["sc@4", "magicore@4"])
    assert rerun.calls("solver") == [] and rerun.calls("reviewer") == []
    fixed = scripted()  # ...unless asked to retry it
    results = bench(tmp_path, fixed, methods=["sc@4", "magicore@4"], retry_errors=True)
    assert fixed.calls("solver") == [] and len(fixed.calls("reviewer")) == 4
    assert results["magicore@4"][HARD]["error"] is None and results["magicore@4"][HARD]["correct"] is True


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    bench(tmp_path, scripted(), methods=["sc@4"])
    with pytest.raises(InputError, match="other settings .*temperature 0.8 there vs 0.5 now"):
        bench(tmp_path, scripted(), methods=["sc@4"], temperature=0.5)
    bench(tmp_path, scripted(), methods=["bok@4"])  # adding a configuration is fine
    assert json.loads((tmp_path / "run.json").read_text())["methods"] == ["sc@4", "bok@4"]


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
                "--methods", "sc,magicore@3", "-k", "3", "--model", f"mock@{server.base_url}", "--reward", "const:0.5",
                "--out", str(out), "--no-progress"]  # fmt: skip
        assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| sc@3 | 5 | 60.0% (3/5) |" in printed and "| magicore@3 | 5 | 60.0% (3/5) |" in printed
    assert (out / "report.md").exists() and (out / "accuracy_vs_cost.png").exists()
    (out / "report.md").unlink()
    assert main(["bench", "--report-only", "--out", str(out), "--no-plot"]) == 0
    assert "| sc@3 | 5 | 60.0% (3/5) |" in (out / "report.md").read_text()
    assert main(["bench", "--report-only", "--out", str(tmp_path / "nothing")]) == 2  # a usage error
