"""The reward-model protocol: step scores (PRM) and outcome scores (ORM), and the chain reward.

Every backend scores a chain's steps with one probability each (`score_steps`) and the whole
solution with one probability (`score_outcome`). `chain_reward` is the single place where the
MAgICoRe reward `R = ORM + prod(step scores)` is computed. Imports nothing from agents/graphs.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

from magicore.tools.run_sync import run_sync


def chain_reward(orm: float, step_scores: Sequence[float]) -> float:
    """MAgICoRe's chain reward: the outcome score plus the product of the step scores.

    A chain without steps has product 0 (nothing was verified), as a chain with no parsable
    answer gets step score 0 in the reference method.
    """
    prm = math.prod(step_scores) if step_scores else 0.0
    return float(orm) + float(prm)


class RewardModel(ABC):
    """A step-wise (PRM) and outcome (ORM) scorer.

    Subclasses implement the async methods; the synchronous ones wrap them. Scores are
    probabilities in [0, 1]: one per step, one per solution.
    """

    #: Short name used in reports and traces, e.g. "verifier" or "judge(SmolLM2-135M)".
    name: str = "reward"

    @abstractmethod
    async def ascore_steps(self, question: str, steps: Sequence[str]) -> list[float]:
        """One score in [0, 1] per step, in order."""

    @abstractmethod
    async def ascore_outcome(self, question: str, solution: str) -> float:
        """One score in [0, 1] for the whole solution."""

    def score_steps(self, question: str, steps: Sequence[str]) -> list[float]:
        return run_sync(self.ascore_steps(question, steps))

    def score_outcome(self, question: str, solution: str) -> float:
        return run_sync(self.ascore_outcome(question, solution))

    async def ascore_steps_batch(self, question: str, chains: Sequence[Sequence[str]]) -> list[list[float]]:
        """Step scores of several chains of one question; backends that can batch override it."""
        return list(await asyncio.gather(*(self.ascore_steps(question, steps) for steps in chains)))

    async def aprepare(self, question: str, chains: Sequence[Sequence[str]]) -> None:
        """A hint that these chains' steps are about to be scored one by one: backends that can
        batch the work (one sandbox run, one request) do it now. A no-op by default."""

    async def ascore_steps_detailed(self, question: str, steps: Sequence[str]) -> tuple[list[float], dict[str, list[float]]]:
        """The step scores and, per component backend, the scores they were made from (a plain
        backend is its own only component)."""
        scores = await self.ascore_steps(question, steps)
        return scores, {self.name: scores}

    async def ascore_outcome_detailed(self, question: str, solution: str) -> tuple[float, dict[str, float]]:
        score = await self.ascore_outcome(question, solution)
        return score, {self.name: score}

    async def aclose(self) -> None:
        """Release connections; a no-op unless the backend holds any."""
