"""Scripted fakes for exact graph tests: the ones magicore publishes as `magicore.testing`."""

from __future__ import annotations

from magicore.evals.datasets import Problem
from magicore.testing import FakeAnswerReward, RoleScriptedModel, solution
from magicore.testing import role_of as fake_role_of

__all__ = ["FakeAnswerReward", "RoleScriptedModel", "bench_problems", "role_of", "solution"]


def role_of(messages) -> str:
    return fake_role_of(str(messages[0].content))


def bench_problems(n: int, hard: str) -> tuple[list[Problem], dict[str, list[str]], FakeAnswerReward]:
    """A scripted benchmark slice: `n` problems whose four chains all give the right answer with a
    high reward, except `hard`, whose four chains give four wrong answers, the first ("5") the
    best of them but far below the batch's first chains (so batch calibration routes it hard).

    Returns the problems, each problem's chain answers in sampling order, and the reward.
    """
    problems = [Problem(id=f"p{i}", question=f"Question {i}: what is the number?", answer=str(10 + i), dataset="t")
                for i in range(n)]  # fmt: skip
    answers = {p.id: [p.answer] * 4 for p in problems} | {hard: ["5", "6", "7", "9"]}
    reward = FakeAnswerReward({**{p.answer: (0.9, 0.9) for p in problems},
                               "5": (0.4, 0.4), "6": (0.2, 0.2), "7": (0.2, 0.2), "9": (0.2, 0.2)})  # fmt: skip
    return problems, answers, reward
