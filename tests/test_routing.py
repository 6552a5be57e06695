"""The easy/hard rule (step 4 of the method) against hand-computed cases, and the calibration behind it.

Notation in the comments: R = ORM + prod(step scores) (0 for a chain with no answer),
z = (R - mu) / sigma, p the normalised vote distribution, H = -sum p ln p, and the confidence
2 * (1 - sigmoid(H)) = 2 * (1 - 1 / (1 + e^-H)) = 2 / (1 + e^H). A confidence is >= 0.5
exactly when e^H <= 3, i.e. H <= ln 3 = 1.098612.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from magicore.agents.chain import Chain
from magicore.graphs.calibration import (
    calibration_dir, calibration_path, from_first_chains, from_rewards, load_calibration, save_calibration,
    self_calibration,
)  # fmt: skip
from magicore.graphs.routing import classify_difficulty, confidence, entropy, reward, step_product
from magicore.graphs.state import Calibration


def chain(answer, orm, steps):
    return SimpleNamespace(answer=answer, orm=orm, step_scores=steps)


# ---------------------------------------------------------------------------------------------
# classify_difficulty


def test_easy_when_the_majority_scores_above_the_calibration_mean():
    chains = [chain("8", 0.9, [0.9])] * 3 + [chain("5", 0.2, [0.3])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # R(8) = 0.9 + 0.9 = 1.8, z = (1.8 - 1) / 0.2 = 4.0 for each of the three "8" chains
    assert d.majority == "8"
    assert d.mean_z == pytest.approx(4.0)
    assert d.cond1 is True
    # ORM votes {8: 2.7, 5: 0.2}: p = (27/29, 2/29) = (0.931034, 0.068966)
    #   H = 0.250955, sigmoid(H) = 0.562411, confidence = 2 * (1 - 0.562411) = 0.875177
    assert d.orm_confidence == pytest.approx(0.8751770064, rel=1e-9)
    # PRM votes {8: 3 * 0.9 = 2.7, 5: 0.3}: p = (0.9, 0.1)
    #   H = 0.325083, sigmoid(H) = 0.580563, confidence = 0.838875
    assert d.prm_confidence == pytest.approx(0.8388749804, rel=1e-9)
    assert d.hard is False


def test_thresholds_are_parameters():
    chains = [chain("8", 0.9, [0.9])] * 3 + [chain("5", 0.2, [0.3])]  # the case above: mean z 4.0
    # with cond1 demanding z >= 5 it fails; the confidences 0.875 and 0.839 still make it easy
    d = classify_difficulty(chains, mu=1.0, sigma=0.2, z_threshold=5.0)
    assert d.cond1 is False and d.hard is False
    # demanding confidence >= 0.85 as well, the PRM confidence (0.839) falls short: hard
    d = classify_difficulty(chains, mu=1.0, sigma=0.2, z_threshold=5.0, confidence_threshold=0.85)
    assert d.hard is True


def test_cond1_alone_makes_a_question_easy_even_with_spread_votes():
    # four different answers, each R = 0.9 + 0.9 = 1.8: the counts tie, the first seen ("5") is
    # the majority; z = (1.8 - 1) / 0.2 = 4.0, so cond1 holds
    chains = [chain(a, 0.9, [0.9]) for a in ("5", "6", "7", "9")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    assert d.majority == "5" and d.cond1 is True and d.mean_z == pytest.approx(4.0)
    # both distributions uniform over 4: H = ln 4 = 1.386294, sigmoid(ln 4) = 1 / (1 + 1/4) = 0.8,
    # confidence = 2 * (1 - 0.8) = 0.4 < 0.5; not hard all the same (hard needs cond1 to fail)
    assert d.orm_confidence == pytest.approx(0.4) and d.prm_confidence == pytest.approx(0.4)
    assert d.hard is False


def test_hard_when_cond1_fails_and_the_votes_are_spread():
    chains = [chain(a, 0.2, [0.3]) for a in ("5", "6", "7", "9")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # R = 0.2 + 0.3 = 0.5 for every chain; majority "5" (first seen of a four-way tie),
    # z = (0.5 - 1) / 0.2 = -2.5 < 0: cond1 fails
    assert d.majority == "5" and d.mean_z == pytest.approx(-2.5) and d.cond1 is False
    # ORM {5: .2, 6: .2, 7: .2, 9: .2} and PRM {.3 each}: uniform over 4, confidence 0.4 (above)
    assert d.orm_confidence == pytest.approx(0.4) and d.prm_confidence == pytest.approx(0.4)
    assert d.hard is True


def test_hard_when_only_the_orm_confidence_is_low():
    chains = [chain("5", 0.2, [0.9])] + [chain(a, 0.2, [0.01]) for a in ("6", "7", "9")]
    d = classify_difficulty(chains, mu=2.0, sigma=0.5)
    # majority "5" (four-way tie, first seen), R = 0.2 + 0.9 = 1.1, z = (1.1 - 2) / 0.5 = -1.8
    assert d.majority == "5" and d.mean_z == pytest.approx(-1.8) and d.cond1 is False
    # ORM uniform over 4 (0.2 each): confidence 0.4 < 0.5
    assert d.orm_confidence == pytest.approx(0.4)
    # PRM {5: 0.9, 6: .01, 7: .01, 9: .01}, total 0.93: p = (0.967742, 0.010753 x 3)
    #   H = 0.177945, e^H = 1.194760, confidence = 2 / (1 + 1.194760) = 0.911262 >= 0.5
    assert d.prm_confidence == pytest.approx(0.9112615440, rel=1e-9)
    assert d.hard is True  # cond1 fails AND one confidence is below 0.5


def test_cond1_fails_but_both_confidences_are_high_so_easy():
    chains = [chain("8", 0.2, [0.3])] * 3 + [chain("5", 0.2, [0.3])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # R = 0.5 everywhere, majority "8", z = -2.5: cond1 fails
    assert d.majority == "8" and d.mean_z == pytest.approx(-2.5) and d.cond1 is False
    # ORM {8: 0.6, 5: 0.2} and PRM {8: 0.9, 5: 0.3}: both p = (0.75, 0.25)
    #   H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.562335, sigmoid(H) = 0.636993, confidence = 0.726015
    assert d.orm_confidence == pytest.approx(0.7260146493, rel=1e-9)
    assert d.prm_confidence == pytest.approx(0.7260146493, rel=1e-9)
    assert d.hard is False


def test_unparsed_chains_score_zero_steps_and_form_their_own_bucket():
    chains = [
        chain(None, 0.5, [0.9, 0.9]),  # no answer: step product 0, not 0.81
        chain(None, 0.5, []),
        chain("8", 0.5, [0.5, 0.8]),  # product 0.4
        chain("5", 0.5, [0.01]),
        chain("8", 0.5, [0.4]),
        chain("7", 0.5, [0.01]),
    ]
    assert step_product(chains[0]) == 0.0 and reward(chains[0]) == 0.5
    assert step_product(chains[2]) == pytest.approx(0.4) and reward(chains[2]) == pytest.approx(0.9)
    d = classify_difficulty(chains, mu=1.0, sigma=0.5)
    # the unanswered chains tie "8" on count and come first, but cannot be the majority
    assert d.majority == "8"
    # R(8) = 0.5 + 0.4 = 0.9 for both, z = (0.9 - 1) / 0.5 = -0.2: cond1 fails
    assert d.mean_z == pytest.approx(-0.2) and d.cond1 is False
    # ORM {None: 1.0, 8: 1.0, 5: 0.5, 7: 0.5}, total 3: p = (1/3, 1/3, 1/6, 1/6)
    #   H = (2/3) ln 3 + (1/3) ln 6 = 1.329661 > ln 3; sigmoid(H) = 0.790785, confidence = 0.418431
    #   (without the None bucket p = (1/2, 1/4, 1/4), H = 1.5 ln 2 = 1.039721, confidence 0.522408:
    #   easy; the unanswered chains' bucket is what makes this question hard)
    assert d.orm_confidence == pytest.approx(0.4184307752, rel=1e-9)
    # PRM {None: 0, 8: 0.8, 5: 0.01, 7: 0.01}, total 0.82: p = (0, 0.975610, 0.012195, 0.012195)
    #   H = 0.131571 (0 ln 0 = 0), sigmoid(H) = 0.532845, confidence = 0.934309
    assert d.prm_confidence == pytest.approx(0.9343090818, rel=1e-9)
    assert d.hard is True


def test_equivalent_answers_are_one_answer():
    chains = [chain("7", 0.3, [0.2]), chain("1,000", 0.6, [0.5]), chain("1000", 0.6, [0.5])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # "1,000" and "1000" are one group (count 2, named by its first member), so it beats "7";
    # grouped by exact string the three would tie and "7" (first seen) would win
    assert d.majority == "1,000"
    # R = 0.6 + 0.5 = 1.1, z = (1.1 - 1) / 0.2 = 0.5 for both: cond1 holds
    assert d.mean_z == pytest.approx(0.5) and d.cond1 is True
    # ORM {7: 0.3, 1,000: 1.2}: p = (0.2, 0.8), H = 0.500402, sigmoid(H) = 0.622554, conf = 0.754892
    assert d.orm_confidence == pytest.approx(0.7548922049, rel=1e-9)
    # PRM {7: 0.2, 1,000: 1.0}: p = (1/6, 5/6), H = 0.450561, sigmoid(H) = 0.610773, conf = 0.778455
    assert d.prm_confidence == pytest.approx(0.7784546838, rel=1e-9)
    assert d.hard is False


def test_the_majority_is_by_count_not_by_reward():
    chains = [chain("8", 0.9, [0.9]), chain("5", 0.1, [0.1]), chain("5", 0.1, [0.1])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.5)
    # "5" has two chains, "8" one: "5" is the majority although R(8) = 1.8 > R(5) = 0.2
    assert d.majority == "5"
    # z(5) = (0.2 - 1) / 0.5 = -1.6 (z(8) would have been (1.8 - 1) / 0.5 = +1.6)
    assert d.mean_z == pytest.approx(-1.6) and d.cond1 is False
    # ORM {8: 0.9, 5: 0.2} and PRM {8: 0.9, 5: 0.1 + 0.1 = 0.2}: both p = (9/11, 2/11)
    #   H = 0.474139, sigmoid(H) = 0.616363, confidence = 0.767274
    assert d.orm_confidence == pytest.approx(0.7672739856, rel=1e-9)
    assert d.prm_confidence == pytest.approx(0.7672739856, rel=1e-9)
    assert d.hard is False


def test_sigma_zero_gives_every_chain_z_zero():
    # the hard case above, but sigma = 0: z = 0 for every chain, mean 0 >= 0, so cond1 holds
    # even though every R (0.5) is below mu (1)
    chains = [chain(a, 0.2, [0.3]) for a in ("5", "6", "7", "9")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.0)
    assert d.mean_z == 0.0 and d.cond1 is True and d.hard is False
    assert d.orm_confidence == pytest.approx(0.4)


def test_all_unparsed_has_no_majority_and_is_hard():
    chains = [chain(None, 0.5, [0.9])] * 3
    d = classify_difficulty(chains, mu=0.0, sigma=1.0)
    # no stated answer: no majority, no z-scores, cond1 fails (even with mu = 0 below every R)
    assert d.majority is None and d.mean_z is None and d.cond1 is False
    # ORM {None: 1.5}: one bucket, H = 0, confidence 2 * (1 - 1/2) = 1
    assert d.orm_confidence == pytest.approx(1.0)
    # PRM {None: 0}: total 0, confidence 0 by the stated convention
    assert d.prm_confidence == 0.0
    assert d.hard is True


def test_a_distribution_with_zero_total_has_confidence_zero():
    chains = [chain("8", 0.0, [0.5])] * 2
    d = classify_difficulty(chains, mu=1.0, sigma=0.5)
    # R = 0 + 0.5 = 0.5, z = (0.5 - 1) / 0.5 = -1: cond1 fails
    assert d.majority == "8" and d.mean_z == pytest.approx(-1.0) and d.cond1 is False
    # ORM {8: 0}: total 0, confidence 0 although every chain agrees
    assert d.orm_confidence == 0.0
    # PRM {8: 1.0}: one bucket, H = 0, confidence 1
    assert d.prm_confidence == pytest.approx(1.0)
    assert d.hard is True


def test_three_equal_buckets_sit_exactly_on_the_threshold():
    # uniform over 3: H = ln 3, e^H = 3, confidence = 2 / (1 + 3) = 0.5: not below 0.5.
    # So with k <= 3 chains a distribution with a positive total never has confidence < 0.5,
    # and only a zero total (confidence 0) can make such a question hard.
    chains = [chain(a, 0.2, [0.3]) for a in ("5", "6", "7")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    assert d.cond1 is False
    assert d.orm_confidence == pytest.approx(0.5) and d.prm_confidence == pytest.approx(0.5)
    assert d.hard is False


def test_any_object_with_the_three_attributes_works():
    class Plain:
        def __init__(self, answer, orm, step_scores):
            self.answer, self.orm, self.step_scores = answer, orm, step_scores

    spec = [("5", 0.2, [0.3]), ("6", 0.2, [0.3]), ("7", 0.2, [0.3]), ("9", 0.2, [0.3])]
    plain = [Plain(*s) for s in spec]
    pydantic = [Chain(text=f"\\boxed{{{a}}}", answer=a, orm=o, step_scores=s) for a, o, s in spec]
    namespaces = [chain(*s) for s in spec]
    results = {str(classify_difficulty(c, mu=1.0, sigma=0.2)) for c in (plain, pydantic, namespaces)}
    assert len(results) == 1
    d = classify_difficulty(plain, mu=1.0, sigma=0.2)
    for attribute in ("hard", "cond1", "orm_confidence", "prm_confidence", "majority"):
        assert hasattr(d, attribute)
    assert d.hard is True


def test_no_chains_is_an_error():
    with pytest.raises(ValueError):
        classify_difficulty([], mu=1.0, sigma=0.2)


def test_entropy_and_confidence_helpers():
    assert entropy([1.0, 1.0]) == pytest.approx(math.log(2))
    assert entropy([2.0]) == 0.0
    assert confidence([5.0]) == pytest.approx(1.0)  # H = 0
    assert confidence([1.0, 1.0]) == pytest.approx(2 / 3)  # H = ln 2, 2 / (1 + 2)
    assert confidence([0.0, 0.0]) == 0.0 and confidence([]) == 0.0


# ---------------------------------------------------------------------------------------------
# graphs/calibration.py


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
