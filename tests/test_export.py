"""Training-data export on the records of a scripted benchmark run whose content is known exactly.

Five problems (gold answer 10 + i). p2 is hard: its chains answer 5, 6, 7, 9; MAgICoRe's Reviewer
criticises each, and the Refiner fixes 5, 6 and 7 but turns 9 into 8. p3 is easy with one wrong
sample (4) among three right ones. Self-Refine's feedback approves a right draft and rejects a
wrong one, whose revision is then right.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from magicore.evals.bench import BenchSettings, Models, run_bench
from magicore.evals.datasets import Problem
from magicore.evals.export import ExportStats, Filters, examples, export
from magicore.evals.export_judges import judge_for, register_judge
from magicore.ui.cli import EXIT_USAGE, main
from tests.fakes import FakeAnswerReward, RoleScriptedModel, solution

PROBLEMS = [Problem(id=f"p{i}", question=f"Question {i}: what is the number?", answer=str(10 + i), dataset="t")
            for i in range(5)]  # fmt: skip
GOLD = {p.id: p.answer for p in PROBLEMS}
ANSWERS = {p.id: [p.answer] * 4 for p in PROBLEMS} | {"p2": ["5", "6", "7", "9"], "p3": ["13", "13", "4", "13"]}
REWARD = FakeAnswerReward({**{p.answer: (0.9, 0.9) for p in PROBLEMS},
                           "5": (0.4, 0.4), "6": (0.2, 0.2), "7": (0.2, 0.2), "9": (0.2, 0.2)})  # fmt: skip
CONFIGS = ["magicore@4", "sc@4", "bok@4", "self-refine@4"]


def _problem(messages) -> Problem:
    text = str(messages[-1].content)
    return next(p for p in PROBLEMS if p.question in text)


def _script() -> RoleScriptedModel:
    seen: dict[str, int] = {}

    def solver(_n, messages):
        p = _problem(messages)
        j = seen.get(p.id, 0)
        seen[p.id] = j + 1
        return solution(ANSWERS[p.id][j % 4])

    def refiner(_n, messages):
        p = _problem(messages)
        return solution("8") if "\\boxed{9}" in str(messages[-1].content) else solution(p.answer)

    def feedback(_n, messages):
        p = _problem(messages)
        current = str(messages[-1].content).split("### Current solution:")[-1]
        return "The solution is correct." if f"\\boxed{{{p.answer}}}" in current else "Step 2 is wrong: add them."

    return RoleScriptedModel({"solver": solver, "reviewer": lambda _n, _m: "Step 2 is wrong: recompute it.",
                              "refiner": refiner, "feedback": feedback,
                              "revise": lambda _n, m: solution(_problem(m).answer)})  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    settings = BenchSettings(dataset="t", methods=CONFIGS, k=4, rounds=2, model="scripted", reward="fake", concurrency=2)
    asyncio.run(run_bench(PROBLEMS, settings, Models(_script(), reward=REWARD), out, progress=False, log=lambda _t: None))
    return out


def answer_of(messages: list[dict]) -> str:
    text = messages[-1]["content"]
    return text.split("\\boxed{")[-1].split("}")[0]


def test_sft_keeps_each_correct_final_solution_once_after_the_solvers_prompt(run_dir):
    stats = ExportStats()
    rows = examples([run_dir], "sft", stats=stats)
    # magicore@4 comes first in run.json, so its records name every solution; the other
    # configurations replay the same samples and add nothing new
    assert [(r["source"]["config"], r["source"]["problem"]) for r in rows] == [("magicore@4", f"p{i}") for i in range(5)]
    assert [answer_of(r["messages"]) for r in rows] == ["10", "11", "12", "13", "14"]
    first = rows[0]["messages"]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[1]["content"] == "Question 0: what is the number?" and "Step 1:" in first[0]["content"]
    assert first[2]["content"] == solution("10")
    # p2's correct solution is a round-1 refinement in MAgICoRe's final pool
    p2 = rows[2]["source"]
    assert p2["field"] == "chains" and p2["round"] == 1 and p2["run"] == run_dir.name
    assert stats.records == 20 and stats.errors == 0 and stats.duplicates == 63 and stats.examples == 5  # docs/export.md


def test_critique_pairs_each_review_with_its_revision(run_dir):
    rows = examples([run_dir], "critique")
    magicore = [r for r in rows if r["source"]["method"] == "magicore"]
    refine = [r for r in rows if r["source"]["method"] == "self-refine"]
    assert len(magicore) == 8 and len(refine) == 10 and len(rows) == 18
    assert [r["task"] for r in magicore] == ["review", "refine"] * 4
    review, revise = magicore[0], magicore[1]
    # the Reviewer's prompt shows the solution with its step scores; the completion is its feedback
    assert "(Score: 10/10)" in review["prompt"][-1]["content"] and "\\boxed{5}" in review["prompt"][-1]["content"]
    assert review["completion"] == [{"role": "assistant", "content": "Step 2 is wrong: recompute it."}]
    assert "Step 2 is wrong: recompute it." in revise["prompt"][-1]["content"]
    assert revise["completion"][0]["content"] == solution("12")
    assert review["source"] == revise["source"]
    src = review["source"]
    assert (src["problem"], src["field"], src["round"], src["parent"]) == ("p2", "refinements", 1, 0)
    assert src["draft"]["field"] == "reviews" and src["draft"]["round"] == 0
    # the draft answering 9 was revised to 8: a wrong revision
    labels = [(answer_of(r["prompt"]) if r["task"] == "refine" else None, r["revision_correct"]) for r in magicore]
    assert [ok for _, ok in labels] == [True, True, True, True, True, True, False, False]
    # Self-Refine: its own feedback prompt (history included) and revision
    sr = refine[0]
    assert sr["style"] == "self-refine" and sr["task"] == "review" and "### Current solution:" in sr["prompt"][-1]["content"]
    assert sr["completion"][0]["content"] == "Step 2 is wrong: add them." and not sr["draft_correct"]
    assert [r["source"]["problem"] for r in refine] == ["p2"] * 8 + ["p3"] * 2
    assert sr["source"]["run"] == run_dir.name and sr["source"]["sample"] == 0 and sr["source"]["field"] == "drafts"


def test_only_correct_drops_wrong_revisions(run_dir):
    rows = examples([run_dir], "critique", only_correct=True)
    assert len(rows) == 16 and all(r["revision_correct"] for r in rows)
    assert all("\\boxed{8}" not in r["completion"][0]["content"] for r in rows)


def test_dpo_prefers_correct_solutions_judged_by_the_gold_answer(run_dir):
    stats = ExportStats()
    rows = examples([run_dir], "dpo", stats=stats)
    got = [(r["source"]["config"], r["source"]["problem"], r["pair"], answer_of(r["chosen"]), answer_of(r["rejected"]))
           for r in rows]  # fmt: skip
    assert got == [
        ("magicore@4", "p2", "revision", "12", "5"),
        ("magicore@4", "p2", "revision", "12", "6"),
        ("magicore@4", "p2", "revision", "12", "7"),
        ("magicore@4", "p3", "samples", "13", "4"),
        ("self-refine@4", "p2", "revision", "12", "9"),
    ]
    assert stats.by_kind == {"revision": 4, "samples": 1} and stats.duplicates == 7  # docs/export.md
    for r in rows:
        assert r["prompt"][-1] == {"role": "user", "content": next(p.question for p in PROBLEMS if p.id == r["source"]["problem"])}
        assert r["chosen"][0]["role"] == r["rejected"][0]["role"] == "assistant"
        assert r["source"]["rejected"]["problem"] == r["source"]["problem"]
    # MAgICoRe's 9 -> 8 is wrong on both sides: no pair; the rejected side of a revision is its draft
    assert rows[0]["source"]["rejected"]["field"] == "reviews"


def test_a_registered_judge_replaces_the_gold_answer(run_dir):
    register_judge("t", lambda record, chain: chain.get("answer") == "8")  # say, hidden tests
    try:
        rows = examples([run_dir], "sft")
    finally:
        from magicore.evals import export_judges

        export_judges._JUDGES.pop("t")
    assert [answer_of(r["messages"]) for r in rows] == ["8"]
    assert judge_for("t") is export_judges.gold_answer_judge


@pytest.mark.parametrize(
    ("fmt", "filters", "expected"),
    [
        ("sft", Filters(route="hard"), [("magicore@4", "p2")]),
        ("sft", Filters(route="easy"), [("magicore@4", p) for p in ("p0", "p1", "p3", "p4")]),
        ("sft", Filters(rounds={1}), [("magicore@4", "p2"), ("self-refine@4", "p3")]),
        ("sft", Filters(methods={"sc"}), [("sc@4", p) for p in ("p0", "p1", "p3", "p4")]),
        ("sft", Filters(methods={"self-refine@4"}), [("self-refine@4", p) for p in ("p0", "p1", "p2", "p3", "p4")]),
        # steps score 1.0 then 0.9; Self-Refine's drafts carry no step scores
        ("sft", Filters(min_step_score=0.9, methods={"bok", "self-refine"}), [("bok@4", p) for p in ("p0", "p1", "p3", "p4")]),
        ("sft", Filters(min_step_score=0.95), []),
        ("dpo", Filters(rounds={0}), [("magicore@4", "p3")]),
        ("critique", Filters(methods={"magicore"}, route="easy"), []),
    ],
)
def test_filters(run_dir, fmt, filters, expected):
    rows = examples([run_dir], fmt, filters)
    assert [(r["source"]["config"], r["source"]["problem"]) for r in rows] == expected


def test_the_export_is_deterministic_and_has_no_duplicates(run_dir, tmp_path):
    for fmt in ("sft", "critique", "dpo"):
        a, b = tmp_path / f"a-{fmt}.jsonl", tmp_path / f"b-{fmt}.jsonl"
        export([run_dir, run_dir], fmt, a)  # the same run twice adds only duplicates
        export([run_dir], fmt, b)
        assert a.read_bytes() == b.read_bytes()
        rows = [json.loads(line) for line in a.read_text().splitlines()]
        keys = [json.dumps({k: v for k, v in r.items() if k in ("messages", "prompt", "completion", "chosen", "rejected")},
                           sort_keys=True) for r in rows]  # fmt: skip
        assert len(keys) == len(set(keys)) > 0


def test_cli_writes_the_file_and_says_what_it_wrote(run_dir, tmp_path, capsys):
    out = tmp_path / "dpo.jsonl"
    assert main(["export", str(run_dir), "--format", "dpo", "--out", str(out), "--method", "magicore,self-refine"]) == 0
    assert len(out.read_text().splitlines()) == 5
    said = capsys.readouterr().out.strip()
    assert said.startswith(f"wrote 5 dpo examples (4 revision, 1 samples) to {out} from 10 records;")


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "sft", "--out", str(tmp_path / "x.jsonl")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"magicore: error: {tmp_path} holds no benchmark run (no run.json)"]
    assert main(["export", str(tmp_path / "nope"), "--format", "sft", "--out", str(tmp_path / "x.jsonl")]) == EXIT_USAGE
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path), "--format", "sft", "--out", "x.jsonl", "--min-step-score", "2"])
    assert exit_info.value.code == 2
    assert "must be between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path), "--format", "sft", "--out", "x.jsonl", "--round", "one"])
    assert exit_info.value.code == 2
    assert "expected round numbers such as 0 or 1,2, got 'one'" in capsys.readouterr().err


def test_records_without_the_reviewed_solution_are_counted_not_guessed(run_dir, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for path in run_dir.iterdir():
        if path.suffix in (".json", ".jsonl") and path.name != "samples.jsonl":
            lines = []
            for line in path.read_text().splitlines() if path.suffix == ".jsonl" else []:
                record = json.loads(line)
                for review in record.get("reviews") or []:
                    review.pop("solution", None)
                lines.append(json.dumps(record))
            (old / path.name).write_text("\n".join(lines) + "\n" if lines else path.read_text())
    stats = ExportStats()
    rows = examples([old], "critique", Filters(methods={"magicore"}), stats=stats)
    assert rows == [] and stats.unlinked_reviews == 4
    assert "4 reviews skipped because their record does not keep the reviewed solution" in stats.summary("critique", old / "x")
