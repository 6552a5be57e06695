"""Where mu and sigma come from (graphs/calibration.py): the statistics, the saved files, and
`magicore calibrate` followed by runs that use what it saved."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from magicore.graphs.calibration import (
    calibration_dir, calibration_path, from_first_chains, from_rewards, load_calibration, save_calibration,
    self_calibration,
)  # fmt: skip
from magicore.graphs.state import Calibration
from tests.test_routing import chain


def test_population_standard_deviation():
    cal = from_rewards([1.0, 2.0, 3.0, 4.0], "test")
    # mu = 2.5; squared deviations 2.25, 0.25, 0.25, 2.25 sum to 5; divided by n = 4 (ddof 0):
    # 1.25; sigma = sqrt(1.25) = 1.118034 (the sample std, ddof 1, would be 1.290994)
    assert cal.mu == pytest.approx(2.5) and cal.sigma == pytest.approx(math.sqrt(1.25))
    assert cal.n == 4 and cal.source == "test"
    numpy = pytest.importorskip("numpy")
    rewards = [1.9, 1.9, 0.1, 0.73, 1.2]
    cal = from_rewards(rewards, "test")
    assert cal.mu == pytest.approx(float(numpy.mean(rewards)))
    assert cal.sigma == pytest.approx(float(numpy.std(rewards)))  # numpy's default ddof=0
    assert from_rewards([0.7], "one").sigma == 0.0
    with pytest.raises(ValueError):
        from_rewards([], "none")


def test_equal_rewards_have_no_spread_at_all():
    cal = from_rewards([0.1, 0.1, 0.1], "self")  # a float sum would give mu 0.10000000000000002
    assert cal.mu == 0.1 and cal.sigma == 0.0


def test_first_chains_and_self_calibration_use_R():
    chains = [chain("8", 0.9, [0.9]), chain(None, 0.5, [0.9]), chain("5", 0.1, [0.5, 0.2])]
    # R = 1.8, 0.5 (no answer: ORM only), 0.1 + 0.1 = 0.2; mu = 2.5 / 3 = 0.833333
    # deviations 0.966667, -0.333333, -0.633333; squares sum 0.934444 + 0.111111 + 0.401111
    # = 1.446667, / 3 = 0.482222, sigma = 0.694422
    cal = from_first_chains(chains)
    assert cal.source == "batch" and cal.n == 3
    assert cal.mu == pytest.approx(2.5 / 3) and cal.sigma == pytest.approx(0.6944222218, rel=1e-9)
    assert self_calibration(chains).source == "self"
    assert self_calibration(chains).sigma == pytest.approx(cal.sigma)


def test_save_and_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGICORE_HOME", str(tmp_path))
    assert calibration_dir() == tmp_path / "calibration"
    assert load_calibration("embedded", "verifier") is None  # nothing saved yet
    cal = Calibration(mu=1.25, sigma=0.375, source="calibrate", n=30)
    path = save_calibration(cal, "embedded", "verifier", dataset="gsm8k", subset=None)
    assert path == calibration_path("embedded", "verifier") and path.parent == tmp_path / "calibration"
    saved = json.loads(path.read_text())
    assert saved["mu"] == 1.25 and saved["sigma"] == 0.375 and saved["n"] == 30
    assert saved["model"] == "embedded" and saved["reward"] == "verifier" and saved["dataset"] == "gsm8k"
    assert not list(path.parent.glob("*.tmp"))  # written atomically, no temporary left
    loaded = load_calibration("embedded", "verifier")
    assert (loaded.mu, loaded.sigma, loaded.n) == (1.25, 0.375, 30)
    assert loaded.source == f"file:{path}"
    # another pair has its own file; the saved one does not leak to it
    assert load_calibration("embedded", "prm=judge*verifier,orm=judge") is None
    assert load_calibration("vllm:m@http://gpu:8000/v1", "verifier") is None
    # a damaged file counts as none (the documented fallback then applies)
    path.write_text("{not json")
    assert load_calibration("embedded", "verifier") is None


# A saved file that is valid JSON of the wrong shape is no calibration (the fallback applies).
@pytest.mark.parametrize("text", ["{}", "[]", '{"mu": "abc", "sigma": 1}'])
def test_a_saved_file_of_the_wrong_shape_counts_as_none(tmp_path, monkeypatch, text):
    monkeypatch.setenv("MAGICORE_HOME", str(tmp_path))
    path = calibration_path("embedded", "verifier")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert load_calibration("embedded", "verifier") is None


def test_one_path_per_model_and_reward_pair(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGICORE_HOME", str(tmp_path))
    pairs = [("embedded", "verifier"), ("embedded", "judge"), ("openai:gpt-4o", "verifier"),
             ("vllm:a@http://h:1/v1", "verifier"), ("vllm:a-http-h-1-v1", "verifier")]  # fmt: skip
    paths = [calibration_path(*p) for p in pairs]
    assert len(set(paths)) == len(pairs)  # distinct even where the readable slugs coincide
    assert paths[3].name.split("-")[:-1] == paths[4].name.split("-")[:-1]
    assert calibration_path("embedded", "verifier") == paths[0]  # stable
    assert all(p.parent == tmp_path / "calibration" and p.suffix == ".json" for p in paths)
    long = calibration_path("x" * 500, "verifier")
    assert len(long.name) < 100


def test_calibration_dir_defaults_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("MAGICORE_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert calibration_dir() == tmp_path / "magicore" / "calibration"


# ---------------------------------------------------------------------------------------------
# `magicore calibrate`, then `magicore solve` using what it saved


RIGHT = "Step 1: 40 + 2 = 42\nThe answer is \\boxed{42}."
WRONG = "Step 1: 40 + 2 = 43\nThe answer is \\boxed{43}."


def cli(*args, home):
    env = {k: v for k, v in os.environ.items() if k != "MAGICORE_MODEL"}
    env["MAGICORE_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "magicore.ui.cli", *args],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip


def test_calibrate_then_solve_uses_the_saved_calibration(tmp_path):
    from magicore.evals.mock_server import MockServer, MockSettings

    # three made-up problems in SVAMP's format, so the test needs no benchmark files
    data = tmp_path / "data"
    data.mkdir()
    (data / "svamp.json").write_text(json.dumps([
        {"ID": f"t-{i}", "Body": f"Tom has {i} apples.", "Question": "He buys 2 more. How many?",
         "Equation": f"( {i} + 2.0 )", "Answer": i + 2.0, "Type": "Addition"} for i in (40, 41, 42)
    ]))  # fmt: skip
    # the mock server's completions 0 and 1 are right, completion 2 is wrong, whatever order the
    # three calibration problems are served in
    settings = MockSettings(reply=lambda _req, i: WRONG if i % 3 == 2 else RIGHT)
    with MockServer(settings) as server:
        proc = cli("calibrate", "--model", server.base_url, "--reward", "verifier", "--dataset", "svamp",
                   "--data", str(data), "--limit", "3", "--json", home=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert len(settings.requests) == 3  # one chain per problem
        # the execution verifier: "40 + 2 = 42" holds -> step 0.95, ORM 0.95, R = 1.9;
        # "40 + 2 = 43" is false -> step 0.05, ORM 0.05, R = 0.1.
        # R = (1.9, 1.9, 0.1): mu = 3.9 / 3 = 1.3; deviations 0.6, 0.6, -1.2, squares sum 2.16,
        # / 3 = 0.72, sigma = sqrt(0.72) = 0.848528
        assert out["n"] == 3 and out["source"] == "calibrate"
        assert out["mu"] == pytest.approx(1.3) and out["sigma"] == pytest.approx(math.sqrt(0.72))
        model_spec = f"openai-compatible:{server.base_url}"
        assert out["model"] == model_spec and out["reward"] == "verifier"
        path = tmp_path / "calibration" / os.path.basename(out["path"])
        assert out["path"] == str(path) and path.exists()
        saved = json.loads(path.read_text())
        assert saved["dataset"] == "svamp" and saved["mu"] == pytest.approx(1.3)

        # every solve chain is now wrong (R = 0.1). With the question's own chains as the
        # calibration (the fallback) sigma would be 0 and cond1 would hold; with the saved file
        # z = (0.1 - 1.3) / 0.848528 = -1.414214 and cond1 fails.
        settings.reply = lambda _req, _i: WRONG
        proc = cli("solve", "Tom has 40 apples and buys 2 more. How many?", "--model", server.base_url,
                   "--reward", "verifier", "-k", "3", "--json", home=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        solved = json.loads(proc.stdout)
        assert solved["calibration"] == f"file:{path}"
        assert "calibration_note" not in solved and "note:" not in proc.stderr  # a saved calibration needs no note
        (decision,) = solved["route"]
        # one answer: both confidences 1, so not hard although cond1 fails
        assert decision["cond1"] is False and decision["hard"] is False and decision["majority"] == "43"


async def test_the_python_api_uses_the_saved_calibration_too(tmp_path, monkeypatch):
    from magicore.agents.backends import chat_model
    from magicore.evals.mock_server import MockServer, MockSettings
    from magicore.graphs.api import asolve
    from magicore.graphs.build import build_graph
    from magicore.graphs.config import MethodConfig

    monkeypatch.setenv("MAGICORE_HOME", str(tmp_path))
    with MockServer(MockSettings(reply=lambda _req, _i: WRONG)) as server:
        model = chat_model(f"m@{server.base_url}")
        spec = model.metadata["magicore_spec"]
        path = save_calibration(Calibration(mu=1.3, sigma=0.5), spec, "verifier")
        config = MethodConfig(k=3, rounds=0)
        saved = await asolve("What is 40 + 2?", model=model, reward="verifier", config=config)
        assert saved.route[0]["calibration"] == f"file:{path}"
        # every chain says 43 (R = 0.1): z = (0.1 - 1.3) / 0.5 = -2.4, cond1 fails
        assert saved.route[0]["cond1"] is False
        graph = build_graph("magicore", model=model, reward="verifier", config=config, saved_calibration=False)
        own = await asolve("What is 40 + 2?", model=model, graph=graph)
        # the question's own chains: equal rewards, sigma exactly 0, z = 0, cond1 holds
        assert own.route[0]["calibration"] == "self" and own.route[0]["cond1"] is True
