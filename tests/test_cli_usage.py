"""Usage and option errors of every command: one line on stderr, the option named, no traceback."""

import json

import pytest

from tests.test_cli import QUESTION, assert_one_line_error, magicore

NOWHERE = "some-model@http://127.0.0.1:9/v1"  # never contacted: these errors come first


@pytest.mark.parametrize("args, fragment", [
    (["solve", QUESTION, "-k", "0"], "argument -k: must be at least 1, got 0"),
    (["solve", QUESTION, "-k", "two"], "argument -k: expected a whole number, got 'two'"),
    (["solve", QUESTION, "--method", "tot"], "argument --method: invalid choice: 'tot'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])  # fmt: skip
def test_usage_errors_are_one_line(args, fragment):
    proc = magicore(*args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "--help" in lines[0], proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--temperature", "5"], "--temperature must be less than or equal to 2, got 5.0"),
    (["--top-p", "0"], "--top-p must be greater than 0, got 0.0"),
    (["-k", "300"], "-k must be less than or equal to 256, got 300"),
    (["--rounds", "50"], "--rounds must be less than or equal to 20, got 50"),
])  # fmt: skip
def test_values_out_of_range_name_the_option(args, fragment):
    assert_one_line_error(magicore("solve", QUESTION, "--model", NOWHERE, *args, timeout=60), fragment)


def test_self_refine_takes_one_model():
    proc = magicore("solve", QUESTION, "--method", "self-refine", "--model", NOWHERE, "--reviewer-model", NOWHERE)
    assert_one_line_error(proc, "self-refine uses one model")


def test_bench_output_that_is_a_file_or_a_damaged_run(tmp_path):
    data = tmp_path / "data"  # one made-up problem in SVAMP's format: no benchmark files needed
    data.mkdir()
    (data / "svamp.json").write_text(json.dumps([{"ID": "t-1", "Body": "Tom has 40 apples.", "Question":
        "He buys 2 more. How many?", "Equation": "( 40 + 2.0 )", "Answer": 42.0, "Type": "Addition"}]))  # fmt: skip
    common = ["bench", "--dataset", "svamp", "--data", str(data), "--limit", "1", "--model", NOWHERE,
              "--no-progress", "--no-plot"]  # fmt: skip
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert_one_line_error(magicore(*common, "--out", str(a_file), timeout=60), "cannot use", "output directory")
    damaged = tmp_path / "run"
    damaged.mkdir()
    (damaged / "run.json").write_text("{not json")
    assert_one_line_error(magicore(*common, "--out", str(damaged), timeout=60), "cannot read", "run.json")
    (damaged / "run.json").write_text(json.dumps([1, 2]))
    assert_one_line_error(magicore(*common, "--out", str(damaged), timeout=60), "not a benchmark run")
