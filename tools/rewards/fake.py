"""A fake reward model for exact tests: scores looked up by the chain's final answer."""

from __future__ import annotations

from collections.abc import Sequence

from magicore.tools.answers import extract_answer
from magicore.tools.rewards.base import RewardModel


class FakeAnswerReward(RewardModel):
    """A chain answering X gets step scores whose product is `table[X][0]` (the last step
    carries it, earlier steps score 1) and outcome score `table[X][1]`; an answer not in the
    table scores (0.5, 0.5). With R = ORM + product of the step scores, the table fixes each
    answer's R, so routing and voting come out exactly as a test plans them."""

    name = "fake-reward"

    def __init__(self, table: dict[str, tuple[float, float]]):
        self.table = table

    def _lookup(self, text: str) -> tuple[float, float]:
        return self.table.get(extract_answer(text) or "", (0.5, 0.5))

    async def ascore_steps(self, question: str, steps: Sequence[str]) -> list[float]:
        step, _ = self._lookup("\n".join(steps))
        return [1.0] * (len(steps) - 1) + [step] if steps else []

    async def ascore_outcome(self, question: str, solution: str) -> float:
        return self._lookup(solution)[1]
