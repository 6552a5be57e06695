"""Combining reward backends: explicit rules, with every component's scores reported.

`CombinedReward` takes the step scores from one or more backends and combines them per step
(product: every backend must believe the step; mean: a softer vote; min: the harshest), and the
outcome scores likewise. Its name spells the combination, e.g. "prm=judge(m)*verifier;orm=judge(m)",
and the detailed methods return each component's scores, so what a score was made of is visible
in results and traces.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Literal

from magicore.tools.rewards.base import RewardModel

Rule = Literal["product", "mean", "min"]
_SYMBOL = {"product": "*", "mean": "+", "min": "&"}


def combine(values: Sequence[float], rule: Rule) -> float:
    if not values:
        raise ValueError("nothing to combine")
    if rule == "product":
        return math.prod(values)
    if rule == "mean":
        return sum(values) / len(values)
    if rule == "min":
        return min(values)
    raise ValueError(f"unknown combination rule {rule!r}")


def _label(backends: Sequence[RewardModel], rule: Rule) -> str:
    return _SYMBOL[rule].join(b.name for b in backends)


class CombinedReward(RewardModel):
    """Step scores from `steps` combined by `step_rule`; outcome scores from `outcome` combined
    by `outcome_rule`."""

    def __init__(
        self,
        steps: Sequence[RewardModel],
        outcome: Sequence[RewardModel],
        *,
        step_rule: Rule = "product",
        outcome_rule: Rule = "product",
    ):
        if not steps or not outcome:
            raise ValueError("a combined reward needs at least one step and one outcome backend")
        self.steps, self.outcome = list(steps), list(outcome)
        self.step_rule, self.outcome_rule = step_rule, outcome_rule
        self.name = f"prm={_label(self.steps, step_rule)};orm={_label(self.outcome, outcome_rule)}"

    async def aprepare(self, question, chains):
        unique = {id(b): b for b in self.steps + self.outcome}.values()
        await asyncio.gather(*(b.aprepare(question, chains) for b in unique))

    async def ascore_steps_detailed(self, question, steps):
        parts = await asyncio.gather(*(b.ascore_steps(question, steps) for b in self.steps))
        components = {b.name: list(p) for b, p in zip(self.steps, parts)}
        scores = [combine(column, self.step_rule) for column in zip(*parts)] if steps else []
        return scores, components

    async def ascore_steps(self, question, steps):
        return (await self.ascore_steps_detailed(question, steps))[0]

    async def ascore_outcome_detailed(self, question, solution):
        parts = await asyncio.gather(*(b.ascore_outcome(question, solution) for b in self.outcome))
        return combine(parts, self.outcome_rule), {b.name: p for b, p in zip(self.outcome, parts)}

    async def ascore_outcome(self, question, solution):
        return (await self.ascore_outcome_detailed(question, solution))[0]

    async def aclose(self) -> None:
        for backend in {id(b): b for b in self.steps + self.outcome}.values():
            await backend.aclose()


class ConstantReward(RewardModel):
    """The same score for every step and solution: for ablations (a PRM that knows nothing)."""

    def __init__(self, value: float):
        if not 0.0 <= value <= 1.0:
            raise ValueError("a constant score must lie in [0, 1]")
        self.value = value
        self.name = f"const({value:g})"

    async def ascore_steps(self, question, steps):
        return [self.value] * len(steps)

    async def ascore_outcome(self, question, solution):
        return self.value
