"""`magicore solve` against a real local HTTP server: success, server failures, bad input.

Each failure must give one readable line on stderr, no traceback, and a non-zero exit code.
"""

import json
import subprocess
import sys

import pytest

from magicore.ui.solve_command import SELF_CALIBRATION_NOTE

from magicore.evals.mock_server import MockServer, MockSettings

QUESTION = "Tom has 40 apples and buys 2 more. How many apples does he have?"


def magicore(*args, stdin=None, timeout=120, env_extra=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "MAGICORE_MODEL"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "magicore.ui.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=env,
    )


def assert_one_line_error(proc, *fragments):
    assert proc.returncode not in (0, None), proc
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("magicore: error:")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def server():
    with MockServer(MockSettings(honour_n=False)) as s:
        yield s


def test_solve_json_against_an_openai_compatible_server(server):
    proc = magicore("solve", QUESTION, "--method", "sc", "--model", f"mock@{server.base_url}", "-k", "3", "--json",
                    "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == "42" and out["method"] == "sc"
    assert out["votes"] == {"42": 3.0}
    assert out["llm_calls"] == 3 and out["requests"] == 3  # the server ignores n: detected, filled
    assert out["input_tokens"] > 0 and out["output_tokens"] > 0 and out["seconds"] > 0
    assert out["model"] == f"openai-compatible:mock@{server.base_url}"


def test_console_traces_go_to_stderr_and_leave_the_json_alone(server):
    proc = magicore("solve", QUESTION, "--method", "sc", "--model", f"mock@{server.base_url}", "-k", "2", "--json",
                    "--trace", "console")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "42"  # stdout is the one JSON object, nothing else
    assert '"name": "invoke_workflow sc"' in proc.stderr and '"name": "chat mock"' in proc.stderr


def test_magicore_json_reports_rounds_and_route(server):
    proc = magicore("solve", QUESTION, "--model", server.base_url, "-k", "3", "--json", "--reward", "verifier")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "magicore" and out["answer"] == "42" and out["rounds"] == 0
    assert out["reward"] == "verifier" and out["calibration"] == "self"
    # no saved calibration: said in the JSON and on stderr, pointing to magicore calibrate
    assert out["calibration_note"] == SELF_CALIBRATION_NOTE and "magicore calibrate" in SELF_CALIBRATION_NOTE
    assert f"magicore: note: {SELF_CALIBRATION_NOTE}" in proc.stderr.splitlines()
    (decision,) = out["route"]
    assert decision == {"round": 0, "hard": False, "cond1": True, "orm_confidence": 1.0,
                        "prm_confidence": 1.0, "majority": "42"}
    assert out["usage_by_role"]["solver"]["llm_calls"] == 3


def test_refine_all_reviews_and_refines_a_question_the_test_calls_easy(server):
    proc = magicore("solve", QUESTION, "--model", server.base_url, "-k", "2", "--reward", "verifier", "--json",
                    "--refine-all")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    first, second = out["route"]
    assert first["hard"] and first["forced"] and first["cond1"]  # the test said easy
    assert not second["hard"] and "forced" not in second and out["rounds"] == 1 and out["answer"] == "42"
    assert out["usage_by_role"]["reviewer"]["llm_calls"] == 2 and out["usage_by_role"]["refiner"]["llm_calls"] == 2
    explained = magicore("solve", QUESTION, "--model", server.base_url, "-k", "2", "--reward", "verifier",
                         "--explain", "--refine-all")  # fmt: skip
    assert "refined on request (the test said easy): 1 refinement round(s), then easy" in explained.stdout
    assert "Round 0: refined on request, the test said easy" in explained.stdout
    refused = magicore("solve", QUESTION, "--method", "sc", "--model", server.base_url, "--refine-all")
    assert_one_line_error(refused, "--refine-all is MAgICoRe's")
    assert refused.returncode == 2


def test_explain_prints_candidates_and_route(server):
    proc = magicore("solve", QUESTION, "--model", server.base_url, "-k", "2", "--reward", "verifier", "--explain")
    assert proc.returncode == 0, proc.stderr
    assert "Method: magicore (easy: settled by the weighted vote)" in proc.stdout
    assert "Round 0: easy" in proc.stdout and "Candidates (final pool):" in proc.stdout
    assert "steps [0.95]" in proc.stdout  # the verifier checked 40 + 2 = 42


def test_question_from_stdin_and_file(server, tmp_path):
    proc = magicore("solve", "-", "--method", "sc", "--model", server.base_url, "-k", "1", "--json", stdin=QUESTION)
    assert proc.returncode == 0, proc.stderr
    assert server.settings.requests[-1]["messages"][-1]["content"] == QUESTION
    path = tmp_path / "q.txt"
    path.write_text(QUESTION + "\n")
    proc = magicore("solve", "--file", str(path), "--method", "sc", "--model", server.base_url, "-k", "1")
    assert proc.returncode == 0 and "Answer: 42" in proc.stdout


def test_show_samples_prints_chains(server):
    proc = magicore("solve", QUESTION, "--model", server.base_url, "-k", "2", "--show-samples")
    assert proc.returncode == 0
    assert proc.stdout.count("--- chain") == 2 and "Step 1: 40 + 2 = 42" in proc.stdout


@pytest.mark.parametrize("method", [["--method", "sc"], ["--reward", "verifier"]])
def test_model_that_answers_nothing_exits_3(method):
    with MockServer(MockSettings(mode="empty")) as s:
        proc = magicore("solve", QUESTION, "--model", s.base_url, "-k", "2", "--json", *method)
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["answer"] is None
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "magicore: no answer: the model returned empty text in 2 samples"
    if "--method" not in method:  # MAgICoRe without a saved calibration says it used the question's own chains
        assert lines[:-1] == [f"magicore: note: {SELF_CALIBRATION_NOTE}"]
    else:
        assert len(lines) == 1


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [("error500", "answered HTTP 500: model crashed"), ("malformed", "malformed"), ("hang", "did not answer within the 1 s timeout")],
)
def test_server_failures_are_one_line_errors(mode, fragment):
    with MockServer(MockSettings(mode=mode)) as s:
        proc = magicore("solve", QUESTION, "--model", f"m@{s.base_url}", "-k", "1", "--timeout", "1")
    assert_one_line_error(proc, fragment, s.base_url)


@pytest.mark.parametrize(
    ("args", "stdin", "fragment", "code"),
    [
        (["solve", ""], None, "the question is empty", 2),
        (["solve", "   \n\t "], None, "the question is empty", 2),
        (["solve", "-"], "   ", "the question is empty", 2),
        (["solve", "x" * 100_000], None, "100,000 characters long", 2),
        (["solve", QUESTION, "--model", "no-such-model"], None, "unknown model spec 'no-such-model'", 2),
        (["solve", QUESTION, "--model", "http://127.0.0.1:9/v1"], None, "cannot reach the model server", 1),
        (["solve", "--file", "/nonexistent/q.txt"], None, "cannot read /nonexistent/q.txt", 2),
    ],
)
def test_bad_input_is_a_one_line_error(args, stdin, fragment, code):
    """A usage error (what the user typed) exits with 2, a runtime error (the server) with 1."""
    proc = magicore(*args, stdin=stdin, timeout=60)
    assert_one_line_error(proc, fragment)
    assert proc.returncode == code


def test_judge_that_answers_nothing_is_a_one_line_error():
    with MockServer(MockSettings(mode="empty")) as s:
        proc = magicore("solve", QUESTION, "--model", s.base_url, "-k", "2", "--reward", "judge")
    assert_one_line_error(proc, "the judge model mock-model returned neither text nor logprobs")


def test_bad_reward_spec_is_a_one_line_error():
    proc = magicore("solve", QUESTION, "--model", "http://127.0.0.1:9/v1", "--reward", "oracle")
    assert_one_line_error(proc, "unknown reward backend 'oracle'")


def test_bad_model_spec_from_the_environment():
    proc = magicore("solve", QUESTION, env_extra={"MAGICORE_MODEL": "bogus"})
    assert_one_line_error(proc, "unknown model spec 'bogus'")


@pytest.mark.parametrize("k", ["0", "-3", "two"])
def test_bad_k_is_a_usage_error(k):
    proc = magicore("solve", QUESTION, "-k", k)
    assert proc.returncode == 2
    assert "argument -k" in proc.stderr.splitlines()[-1] and "Traceback" not in proc.stderr


def test_unwritable_trace_file_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = magicore("solve", QUESTION, "--model", "http://127.0.0.1:9/v1", "--trace", f"jsonl:{blocker}/x.jsonl",
                    timeout=60)  # fmt: skip
    assert_one_line_error(proc, f"cannot write traces to '{blocker}/x.jsonl': {blocker} is not a directory")
    assert proc.returncode == 2  # a usage error: the path given
