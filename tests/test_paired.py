"""Paired runs' parts: configuration parsing, the score cache's honest charging, and the
report's paired statistics, each against hand-computed values."""

from __future__ import annotations

import math

import pytest

from magicore.evals.paired import CachedReward, MethodRun, parse_configs
from magicore.evals.report import compare, mcnemar_exact
from magicore.graphs.build import normalize_method
from magicore.tools.errors import InputError
from magicore.tools.usage import Usage, charge_usage, track_usage
from magicore.tools.rewards.base import RewardModel


def test_configurations_parse_with_their_k():
    runs = parse_configs("magicore@4, sc@12,bok,self-refine@4,sc@12", 8, normalize_method)
    assert runs == [MethodRun("magicore", 4), MethodRun("sc", 12), MethodRun("bok", 8), MethodRun("self-refine", 4)]
    assert [r.label for r in runs] == ["magicore@4", "sc@12", "bok@8", "self-refine@4"]


def test_magicore_all_is_magicore_refining_every_problem():
    (run,) = parse_configs("magicore-all@4", 8, normalize_method)
    assert run == MethodRun("magicore", 4, "all") and run.label == "magicore-all@4"
    assert MethodRun("magicore", 4).label == "magicore@4"


@pytest.mark.parametrize("text", ["sc@", "sc@x", "sc-all@4", "@4", "sc@0", "", " , "])
def test_bad_configurations_are_one_clear_error(text):
    with pytest.raises(InputError):
        parse_configs(text, 8, normalize_method)


class CountingJudge(RewardModel):
    """A reward whose every score costs one LLM call of 10 input tokens."""

    name = "counting"

    def __init__(self):
        self.calls = 0

    async def ascore_steps(self, question, steps):
        self.calls += 1
        charge_usage(Usage(llm_calls=len(steps), requests=len(steps), input_tokens=10 * len(steps)))
        return [0.5] * len(steps)

    async def ascore_outcome(self, question, solution):
        self.calls += 1
        charge_usage(Usage(llm_calls=1, requests=1, input_tokens=10))
        return 0.25


async def test_a_cached_score_is_computed_once_and_charged_every_time(tmp_path):
    inner = CountingJudge()
    reward = CachedReward(inner, tmp_path)
    for _ in range(2):
        with track_usage() as used:
            steps, _ = await reward.ascore_steps_detailed("q", ["a", "b"])
            outcome, _ = await reward.ascore_outcome_detailed("q", "a\nb")
        assert steps == [0.5, 0.5] and outcome == 0.25
        assert (used.llm_calls, used.input_tokens) == (3, 30)  # what it cost to compute, both times
    assert inner.calls == 2
    again = CachedReward(CountingJudge(), tmp_path)  # a rerun reads scores.jsonl
    with track_usage() as used:
        assert (await again.ascore_steps("q", ["a", "b"])) == [0.5, 0.5]
    assert again.inner.calls == 0 and used.llm_calls == 2
    other = CachedReward(CountingJudge(), tmp_path)
    await other.ascore_steps("q", ["a", "c"])  # other steps: computed
    assert other.inner.calls == 1


def test_exact_mcnemar_against_the_binomial():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # two-sided: both all-one-way outcomes
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)


def test_paired_comparison_counts_discordant_problems_on_shared_ids():
    ids = [f"p{i}" for i in range(10)]
    a = {i: {"correct": n < 7} for n, i in enumerate(ids)}  # p0..p6 right
    b = {i: {"correct": n < 5 or n == 9} for n, i in enumerate(ids) if n != 8}  # p8 missing
    c = compare("a", a, "b", b, ids, samples=2000)
    assert c.n == 9 and c.only_first == 2 and c.only_second == 1  # p5, p6 / p9
    assert c.difference == pytest.approx(1 / 9)
    assert c.p_value == pytest.approx(1.0)
    assert c.interval[0] <= c.difference <= c.interval[1]
    same = compare("a", a, "a", a, ids, samples=500)
    assert same.difference == 0 and same.interval == (0.0, 0.0) and same.p_value == 1.0
    assert math.isclose(compare("a", a, "b", b, ids, samples=2000).interval[0], c.interval[0])  # fixed seed
