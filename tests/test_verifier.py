"""The execution verifier (magicore.tools.rewards.verifier): which text is a claim, how each claim
is judged in the sandbox, step and outcome scores, batching, and failures that must not break
scoring. Exact; most tests share one sandbox run."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from magicore.tools.errors import InputError, SetupError
from magicore.tools.rewards import verifier as verifier_module
from magicore.tools.rewards._claims import extract
from magicore.tools.rewards.base import chain_reward
from magicore.tools.rewards.verifier import ExecutionVerifier, StepCheck
from magicore.tools.sandbox import ExecutionResult

V = ExecutionVerifier(code_timeout=1.0)

# (step, describe() of its StepCheck): each claim form, true then false.
CLAIMS = [
    ("16 - 3 - 4 = 9", "16 - 3 - 4 = 9: holds"),
    ("16 - 3 - 4 = 8", "16 - 3 - 4 = 8: false, 16 - 3 - 4 is 9"),
    ("She makes $9 * 2 = $18 a day.", "9 * 2 = 18: holds"),
    ("She makes $9 * 2 = $19 a day.", "9 * 2 = 19: false, 9 * 2 is 18"),
    ("In May she sold 48/2 = 24 clips.", "48/2 = 24: holds"),
    ("In May she sold 48/2 = 25 clips.", "48/2 = 25: false, 48/2 is 24"),
    ("3 x 4 = 12", "3 x 4 = 12: holds"),
    ("3 x 4 = 14", "3 x 4 = 14: false, 3 x 4 is 12"),
    ("5 × 6 = 30", "5 × 6 = 30: holds"),
    ("5 × 6 = 36", "5 × 6 = 36: false, 5 × 6 is 30"),
    ("12 ÷ 4 = 3", "12 ÷ 4 = 3: holds"),
    ("12 ÷ 4 = 4", "12 ÷ 4 = 4: false, 12 ÷ 4 is 3"),
    ("2^3 = 8", "2^3 = 8: holds"),
    ("2^3 = 6", "2^3 = 6: false, 2^3 is 8"),
    ("1,000 + 200 = 1,200", "1,000 + 200 = 1,200: holds"),
    ("1,000 + 200 = 1,300", "1,000 + 200 = 1,300: false, 1,000 + 200 is 1200"),
    ("2 + 3 = 5 + 4 = 9", "2 + 3 = 5: holds; 5 + 4 = 9: holds"),
    ("2 + 3 = 5 + 4 = 10", "2 + 3 = 5: holds; 5 + 4 = 10: false, 5 + 4 is 9"),
    ("2 + 3 = 6 + 4 = 10", "2 + 3 = 6 + 4: false, 2 + 3 is 5 and 6 + 4 is 10; 6 + 4 = 10: holds"),
    ("3/4 * 8 = 24/4 = 6", "3/4 * 8 = 24/4: holds; 24/4 = 6: holds"),
    ("3/4 * 8 = 24/4 = 7", "3/4 * 8 = 24/4: holds; 24/4 = 7: false, 24/4 is 6"),
    ("3/4 * 8 = 25/4 = 6", "3/4 * 8 = 25/4: false, 3/4 * 8 is 6 and 25/4 is 6.25; 25/4 = 6: false, 25/4 is 6.25"),
    (r"$\frac{3}{4} \times 8 = 6$", "(3/4) × 8 = 6: holds"),
    (r"$\frac{3}{4} \times 8 = 7$", "(3/4) × 8 = 7: false, (3/4) × 8 is 6"),
    (r"\$9 \times 2 = \$18 and 50\% of 20 = 10", "9 × 2 = 18: holds; 50% of 20 = 10: holds"),
    (r"\$9 \times 2 = \$18 and 50\% of 20 = 12", "9 × 2 = 18: holds; 50% of 20 = 12: false, 50% of 20 is 10"),
    ("20% of 50 is 10", "20% of 50 = 10: holds"),
    ("20% of 50 is 15", "20% of 50 = 15: false, 20% of 50 is 10"),
    ("20% of 50 = 10", "20% of 50 = 10: holds"),
    ("20% of 50 = 12", "20% of 50 = 12: false, 20% of 50 is 10"),
    ("So 50/200 = 25% of the class.", "50/200 = 25%: holds"),
    ("So 50/200 * 100 = 25%.", "50/200 * 100 = 25%: holds"),
    ("So 50/200 = 20%.", "50/200 = 20%: false, 50/200 is 0.25"),
    ("half of 48 is 24", "half of 48 = 24: holds"),
    ("half of 48 is 26", "half of 48 = 26: false, half of 48 is 24"),
    ("Twice 12 is 24", "Twice 12 = 24: holds"),
    ("Twice 12 is 22", "Twice 12 = 22: false, Twice 12 is 24"),
    ("3 times 4 is 12 and 17 % 5 = 2", "3 times 4 = 12: holds; 17 % 5 = 2: holds"),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.", "48/2 = 24: holds"),
    ("Natalia sold <<48/2=26>>26 clips in May.", "48/2 = 26: false, 48/2 is 24"),
    ("**Total:** 5 + 3 = **8**", "5 + 3 = 8: holds"),
    ("2(3 + 4) = 14", "2(3 + 4) = 14: holds"),
    ("Total = -3 + 5 = 2", "-3 + 5 = 2: holds"),
    ("5/0 = 0", "5/0 = 0: false, division by zero"),
    ("2^100000 = 1", "2^100000 = 1: not checked, an exponent too large to check"),
]
ROUNDING = [
    ("10/3 = 3.33", "10/3 = 3.33: holds (rounded)"),
    ("2/3 = 0.67", "2/3 = 0.67: holds (rounded)"),
    ("2/3 = 0.66", "2/3 = 0.66: holds (rounded)"),  # truncated
    ("1/8 = 0.125", "1/8 = 0.125: holds"),
    ("10/3 ≈ 3", "10/3 ≈ 3: holds (rounded)"),
    ("10/3 = 3.4", "10/3 = 3.4: false, 10/3 is 3.333333333"),
    ("10/3 = 3", "10/3 = 3: false, 10/3 is 3.333333333"),  # an integer with "=" is exact
    ("10/3 = 3.33 * 3 = 10", "10/3 = 3.33: holds (rounded); 3.33 * 3 = 10: holds (rounded)"),
]
NOT_CLAIMS = [
    "On 2024-05-01 she paid 12/25/2023's bill.",
    "The ratio of boys to girls is 3:4.",
    "Let x = 5.",
    "So 2x + 3 = 13.",
    "Then x - 3 = 2, and f(3) = 9.",
    "Step 1: read the question carefully.",
    "She has 12 apples = 12 apples.",
    r"The answer is \boxed{18}.",
    r"\sqrt{16} + 1 = 5",
    "2 + 3 = 5x",
    "```text\nstatus: ok\n```",
]
PASSING_BLOCK = "```python\neggs = 16 - 3 - 4\nassert eggs * 2 == 18\nprint(eggs * 2)\n```"
CODE = [
    (PASSING_BLOCK, "python block: ran without error, printed '18'", 0.95),
    ("```python\nassert 16 - 3 - 4 == 8\n```", "python block: false, AssertionError", 0.05),
    ("```py\nprint(1 / 0)\n```", "python block: false, ZeroDivisionError: division by zero", 0.05),
    ("```python\nprint(eggs)\n```",
     "python block: not checked, depends on code outside the block: NameError: name 'eggs' is not defined", 0.9),
]
LOOP = "```python\nwhile True:\n    pass\n```"


@pytest.fixture(scope="module")
def checked() -> dict[str, StepCheck]:
    """Every step above, checked in one batch (one sandbox run)."""
    steps = [s for s, _ in CLAIMS + ROUNDING] + NOT_CLAIMS + [s for s, _, _ in CODE]
    chains = [steps[i:i + 7] for i in range(0, len(steps), 7)]
    results = asyncio.run(V.averify_chains("q", chains))
    return {step: check for chain, checks in zip(chains, results) for step, check in zip(chain, checks)}


@pytest.mark.parametrize(("step", "expected"), CLAIMS)
def test_claim_forms(checked, step, expected):
    check = checked[step]
    assert check.describe() == expected
    holds = [c.holds for c in check.claims]
    assert check.score == (0.9 if None in holds else 0.95 if all(holds) else 0.05)


@pytest.mark.parametrize(("step", "expected"), ROUNDING)
def test_rounded_results_hold_within_the_precision_shown(checked, step, expected):
    assert checked[step].describe() == expected


@pytest.mark.parametrize("step", NOT_CLAIMS)
def test_things_that_only_look_like_equations_are_not_claims(checked, step):
    assert extract(step).equations == () and extract(step).code == ()
    assert checked[step].claims == [] and checked[step].score == 0.9
    assert checked[step].describe() == "nothing to check"


def test_step_labels_and_units_are_not_part_of_the_claim():
    (eq,) = extract("Step 1: 48/2 = 24 clips.").equations
    assert [s.py for s in eq.segments] == ["48 / 2", "24"]


@pytest.mark.parametrize(("step", "expected", "score"), CODE)
def test_code_blocks(checked, step, expected, score):
    assert checked[step].describe() == expected and checked[step].score == score


async def test_a_block_that_never_ends_is_contained_and_decides_nothing():
    start = time.monotonic()
    (check,) = await V.averify_steps("q", [LOOP + "\nso 9 * 2 = 18"])
    assert time.monotonic() - start < 5
    assert check.describe() == ("9 * 2 = 18: holds; python block: not checked, "
                                "timed out (it may be slow rather than wrong)")
    assert check.score == 0.95 and check.error is None


async def test_a_block_that_kills_the_checker_leaves_the_arithmetic_checked():
    kill = "```python\nimport os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n```"
    first, second = await V.averify_steps("q", ["9 * 2 = 19", kill])
    assert first.describe() == "9 * 2 = 19: false, 9 * 2 is 18" and first.score == 0.05
    assert second.claims[0].holds is None and second.score == 0.9 and second.error


async def test_code_checking_can_be_turned_off():
    (check,) = await ExecutionVerifier(check_code=False).averify_steps("q", [PASSING_BLOCK])
    assert check.describe() == "nothing to check" and check.score == 0.9  # read as text: "eggs = ..."


async def test_a_batch_of_chains_is_one_sandbox_run(monkeypatch):
    calls, real = [], verifier_module.arun_python

    async def counting(*args, **kwargs):
        calls.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(verifier_module, "arun_python", counting)
    chains = [["2 + 2 = 4", "4 * 3 = 12"], ["2 + 2 = 5"], [], ["No numbers.", PASSING_BLOCK]]
    result = await V.averify_chains("q", chains)
    assert len(calls) == 1
    assert [[c.score for c in checks] for checks in result] == [[0.95, 0.95], [0.05], [], [0.9, 0.95]]
    assert [[c.index for c in checks] for checks in result] == [[0, 1], [0], [], [0, 1]]
    assert await V.ascore_steps_batch("q", [["No numbers."]]) == [[0.9]] and len(calls) == 1  # nothing to run


@pytest.mark.parametrize("failure", ["setup", "timeout"])
async def test_a_failing_sandbox_gives_neutral_scores_and_says_why(monkeypatch, failure):
    async def broken(*args, **kwargs):
        if failure == "setup":
            raise SetupError("The Python sandbox needs Linux.")
        return ExecutionResult(stdout="", stderr="", exit_code=None, signal="SIGKILL", timed_out=True,
                               output_limit_hit=False, stdout_truncated=False, stderr_truncated=False,
                               duration_s=10.0, protections=(), timeout=10.0, memory_mb=512)

    monkeypatch.setattr(verifier_module, "arun_python", broken)
    checks = await V.averify_steps("q", ["9 * 2 = 19", PASSING_BLOCK, "No numbers."])
    assert [c.score for c in checks] == [0.9, 0.9, 0.9]
    assert all(c.holds is None for c in checks[0].claims + checks[1].claims)
    reason = "sandbox unavailable: The Python sandbox needs Linux." if failure == "setup" else (
        "checking program timed out after 10 s")
    assert checks[0].error == checks[1].error == reason and checks[2].error is None
    assert checks[0].describe() == f"9 * 2 = 19: not checked, {reason}"
    assert checks[1].describe() == f"python block: not checked, not run: {reason}"


async def test_deterministic():
    steps = [s for s, _ in CLAIMS[:12]] + [CODE[0][0], CODE[1][0]]
    first, second = await V.averify_steps("q", steps), await V.averify_steps("q", steps)
    assert [c.model_dump() for c in first] == [c.model_dump() for c in second]


def test_sync_wrappers_and_name():
    assert V.name == "verifier"
    assert V.score_steps("q", ["16 - 3 - 4 = 9", "9 * 2 = 19", "Sell the eggs."]) == [0.95, 0.05, 0.9]
    # 2 of 3 claims hold: 0.05 + 0.9 * 2/3
    assert V.score_outcome("q", "Step 1: 16 - 3 - 4 = 9\nStep 2: 9 * 2 = 19\nStep 3: 1 + 1 = 2") == pytest.approx(0.65)
    assert V.score_outcome("q", "Step 1: 16 - 3 - 4 = 9\nStep 2: 9 * 2 = 18") == pytest.approx(0.95)
    assert V.score_outcome("q", "Step 1: think\nStep 2: answer") == 0.5
    assert V.score_outcome("q", "") == 0.5


QUESTION = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
            "muffins for her friends every day with four. She sells the remainder at the farmers' "
            "market daily for $2 per fresh duck egg. How much in dollars does she make every day?")
CORRECT = """Step 1: Janet's ducks lay 16 eggs per day.
Step 2: She eats 3 and bakes with 4, so she uses 3 + 4 = 7 eggs.
Step 3: She has 16 - 7 = 9 eggs left to sell.
Step 4: She sells each for $2, so she makes 9 * $2 = $18.
The answer is \\boxed{18}."""
SLIP = CORRECT.replace("16 - 7 = 9 eggs", "16 - 7 = 8 eggs").replace("9 * $2 = $18", "8 * $2 = $16").replace(
    "boxed{18}", "boxed{16}")


async def test_gsm8k_chain_with_a_slip_scores_lower():
    from magicore.tools.steps import split_steps

    good, bad = await V.ascore_steps_batch(QUESTION, [split_steps(CORRECT), split_steps(SLIP)])
    assert good == [0.9, 0.95, 0.95, 0.95] and bad == [0.9, 0.95, 0.05, 0.95]
    assert math.prod(good) > 10 * math.prod(bad)
    orm_good, orm_bad = await V.ascore_outcome(QUESTION, CORRECT), await V.ascore_outcome(QUESTION, SLIP)
    assert chain_reward(orm_good, good) > chain_reward(orm_bad, bad)


def test_scores_are_validated():
    with pytest.raises(InputError):
        ExecutionVerifier(neutral=1.2)
    with pytest.raises(InputError):
        ExecutionVerifier(neutral=0.99)  # above verified_score: checking a step would cost it
    with pytest.raises(InputError):
        ExecutionVerifier(code_timeout=0)


@pytest.fixture
def sandbox_runs(monkeypatch):
    """Counts the verifier's sandbox runs."""
    runs = []
    real = verifier_module.arun_python

    async def counting(*args, **kwargs):
        runs.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(verifier_module, "arun_python", counting)
    return runs


async def test_steps_and_outcome_of_one_chain_share_one_sandbox_run(sandbox_runs):
    runs = sandbox_runs
    verifier = ExecutionVerifier()
    steps = ["16 - 3 - 4 = 9 eggs are left.", "9 * 2 = 18 dollars."]
    scores, outcome = await asyncio.gather(verifier.ascore_steps("q", steps), verifier.ascore_outcome("q", "\n".join(steps)))
    assert scores == [0.95, 0.95] and outcome == 0.95
    assert len(runs) == 1
    await verifier.ascore_steps("q", steps)
    assert len(runs) == 1  # remembered


async def test_prepare_checks_many_chains_in_one_sandbox_run(sandbox_runs):
    runs = sandbox_runs
    verifier = ExecutionVerifier()
    chains = [[f"{i} + 1 = {i + 1}", f"{i} * 2 = {2 * i + (i % 2)}"] for i in range(6)]
    await verifier.aprepare("q", chains)
    assert len(runs) == 1
    scores = await asyncio.gather(*(verifier.ascore_steps("q", steps) for steps in chains))
    assert len(runs) == 1
    assert scores == [[0.95, 0.95] if i % 2 == 0 else [0.95, 0.05] for i in range(6)]
