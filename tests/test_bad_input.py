"""Bad input of every kind gets one line naming the problem, never a traceback: exit code 2 for a
usage error (what the user typed or pointed at), 1 for a runtime error. Also the Python API's
checks on its arguments."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from magicore.evals.datasets import load_problems
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.graphs.api import asolve
from magicore.graphs.build import build_graph
from magicore.tools.errors import InputError
from tests.test_cli import QUESTION, assert_one_line_error, magicore

NOWHERE = "some-model@http://127.0.0.1:9/v1"  # never contacted: these errors come first
GSM8K_LINE = json.dumps({"question": "What is 2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"})


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("gsm8k_test.jsonl", GSM8K_LINE + "\n" + GSM8K_LINE[:25] + "\n", "is not valid JSON (line 2"),
    ("gsm8k_test.jsonl", GSM8K_LINE + "\n" + json.dumps({"question": "Hi?"}) + "\n",
     "line 2 is not a gsm8k problem (no field 'answer')"),
    ("gsm8k_test.jsonl", b"\xff\xfe" + GSM8K_LINE.encode(), "is not UTF-8 text"),
    ("gsm8k_test.jsonl", "[1, 2]\n", "line 1 is not a gsm8k problem"),
    ("svamp.json", '[{"ID": "a", "Body": "x"', "is not valid JSON (line 1"),
    ("svamp.json", '{"ID": "a"}', "is not a JSON list of problems"),
    ("svamp.json", '[{"ID": "a", "Body": "x"}]', "problem 1 is not a svamp problem (no field 'Question')"),
    ("math500_test.jsonl", '{"problem": "1+1?"}\n', "line 1 is not a math500 problem (no field 'answer')"),
])  # fmt: skip
def test_a_damaged_dataset_file_is_one_input_error(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    dataset = {"gsm8k_test.jsonl": "gsm8k", "svamp.json": "svamp", "math500_test.jsonl": "math500"}[name]
    with pytest.raises(InputError) as caught:
        load_problems(dataset, tmp_path)
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_a_damaged_dataset_through_the_cli(tmp_path):
    (tmp_path / "gsm8k_test.jsonl").write_text(GSM8K_LINE[:30])
    proc = magicore("bench", "--dataset", "gsm8k", "--data", str(tmp_path), "--model", NOWHERE,
                    "--out", str(tmp_path / "out"), "--no-progress", timeout=60)  # fmt: skip
    assert_one_line_error(proc, "gsm8k_test.jsonl is not valid JSON (line 1")
    assert proc.returncode == 2


@pytest.mark.parametrize(("args", "fragment"), [
    (["--model", "http://[::1"], "http://[::1 is not a valid URL (Invalid IPv6 URL)"),
    (["--model", "m@http://localhost:99999/v1"], "is not a valid URL (Port out of range"),
    (["--model", NOWHERE, "--timeout", "nan"], "argument --timeout: must be a finite number, got 'nan'"),
    (["--model", NOWHERE, "--timeout", "inf"], "argument --timeout: must be a finite number, got 'inf'"),
    (["--model", ""], "the model spec is empty; use 'embedded' or MODEL@URL"),
    (["--model", NOWHERE, "--reward", "const:abc"], "'const:abc': the constant score must be a number in [0, 1], not 'abc'"),
    (["--model", NOWHERE, "--reward", "prm=verifier,orm=const:2"], "'const:2': the constant score must lie in [0, 1]"),
])  # fmt: skip
def test_bad_options_are_usage_errors(args, fragment):
    proc = magicore("solve", QUESTION, *args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_a_question_file_without_end_is_refused_after_the_limit():
    started = time.monotonic()
    proc = magicore("solve", "--file", "/dev/zero", "--model", NOWHERE, timeout=60)
    assert_one_line_error(proc, "/dev/zero holds more than 80,000 bytes; a question is at most 20,000 characters")
    assert proc.returncode == 2 and time.monotonic() - started < 30


def test_endless_standard_input_is_refused_after_the_limit():
    env = {k: v for k, v in os.environ.items() if k != "MAGICORE_MODEL"}
    endless = subprocess.Popen(["yes", "How many apples?"], stdout=subprocess.PIPE)
    try:
        proc = subprocess.run([sys.executable, "-m", "magicore.ui.cli", "solve", "-", "--model", NOWHERE],
                              stdin=endless.stdout, capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    finally:
        endless.kill()
        endless.wait()
    assert_one_line_error(proc, "standard input holds more than 80,000 bytes")
    assert proc.returncode == 2


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_invalid_utf8_is_the_same_error_from_a_file_and_from_stdin(tmp_path, source):
    data = "How many apples? ".encode() + b"\xc3\x28"
    path = tmp_path / "q.txt"
    path.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k != "MAGICORE_MODEL"}
    args = ["--file", str(path)] if source == "file" else ["-"]
    proc = subprocess.run([sys.executable, "-m", "magicore.ui.cli", "solve", *args, "--model", NOWHERE],
                          input=data if source == "stdin" else None, capture_output=True, timeout=60, env=env)  # fmt: skip
    proc.stderr = proc.stderr.decode()
    name = str(path) if source == "file" else "standard input"
    assert_one_line_error(proc, f"{name} is not UTF-8 text (byte 17 is invalid)")
    assert proc.returncode == 2


def test_two_ctrl_c_during_bench_exit_130_without_a_traceback(tmp_path):
    """Ctrl-C, then Ctrl-C again while the first one's clean-up runs: one line, exit code 130."""
    (tmp_path / "gsm8k_test.jsonl").write_text("\n".join([GSM8K_LINE] * 4) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "MAGICORE_MODEL"}
    with MockServer(MockSettings(mode="hang")) as server:
        for gap in (0.0, 0.05, 0.3):
            server.settings.requests.clear()  # the previous run's late requests must not count
            proc = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-m", "magicore.ui.cli", "bench", "--dataset", "gsm8k", "--data", str(tmp_path),
                 "--methods", "magicore,sc", "--model", f"mock@{server.base_url}", "-k", "2",
                 "--out", str(tmp_path / f"out{gap}"), "--no-progress", "--no-plot"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                # as a terminal starts it: a suite run in the background ignores SIGINT, and
                # a child would inherit that
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while len(server.settings.requests) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)  # wait until the bench is at work
            proc.send_signal(signal.SIGINT)
            time.sleep(gap)
            proc.send_signal(signal.SIGINT)
            try:
                _out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                _out, err = proc.communicate(timeout=20)
                raise AssertionError(err[-8000:])
            assert "Traceback" not in err and "Exception ignored" not in err, err
            assert proc.returncode == 130, err
            assert err.strip().splitlines()[-1] == "magicore: interrupted", err


# --------------------------------------------------------------------------- the Python API


def test_build_graph_and_asolve_without_a_model_say_what_they_need():
    for call in (lambda: build_graph("sc", model=None), lambda: asyncio.run(asolve(QUESTION, model=None))):
        with pytest.raises(InputError, match=r"model must be a LangChain chat model or a model spec .* got nothing"):
            call()
    with pytest.raises(InputError, match="reviewer_model must be .* got a int"):
        build_graph("magicore", model="some-model@http://127.0.0.1:9/v1", reviewer_model=3)


def test_asolve_takes_a_model_spec_string_as_the_cli_does():
    with MockServer(MockSettings()) as server:
        result = asyncio.run(asolve(QUESTION, method="sc", model=f"mock@{server.base_url}"))
    assert result.answer == "42" and result.llm_calls == 8


@pytest.mark.parametrize(("inputs", "message"), [
    ({"question": 5}, r"the question must be text \(str\), not int"),
    ({"question": "  "}, "the question is empty"),
    ({}, "the question is empty"),
])  # fmt: skip
def test_a_graph_used_directly_checks_its_input_as_asolve_does(inputs, message):
    from magicore.testing import RoleScriptedModel, solution

    graph = build_graph("sc", model=RoleScriptedModel({"solver": lambda n, _m: solution("4")}))
    with pytest.raises(InputError, match=message):
        asyncio.run(graph.ainvoke(inputs))


def test_a_bytes_question_is_refused_not_stringified():
    with pytest.raises(InputError, match=r"the question must be text \(str\), not bytes; decode it first"):
        asyncio.run(asolve(QUESTION.encode(), method="sc", model=NOWHERE))
