"""Scripted fakes for exact graph tests: a chat model that answers by role, a reward by answer."""

from __future__ import annotations

from collections.abc import Callable

from magicore.agents.fake import ScriptedFakeChatModel
from magicore.agents.fake import role_of as fake_role_of
from magicore.tools.rewards.base import RewardModel


def role_of(messages) -> str:
    return fake_role_of(str(messages[0].content))


def solution(answer: str) -> str:
    return f"Step 1: I think hard.\nStep 2: So it is {answer}.\nThe answer is \\boxed{{{answer}}}."


class RoleScriptedModel(ScriptedFakeChatModel):
    """Fake chat model: `script[role]` is a function (call number for that role, messages) -> text."""

    def __init__(self, script: dict[str, Callable], **kwargs):
        counters: dict[str, int] = {}
        calls: dict[str, list] = {}

        def respond(messages, _index):
            role = role_of(messages)
            n = counters.get(role, 0)
            counters[role] = n + 1
            calls.setdefault(role, []).append(messages)
            return script[role](n, messages)

        super().__init__(respond=respond, **kwargs)
        object.__setattr__(self, "_calls", calls)

    def calls(self, role: str) -> list:
        return self._calls.get(role, [])


class FakeAnswerReward(RewardModel):
    """Fake reward: a chain answering X gets step scores whose product is `table[X][0]` (the
    last step carries it, earlier steps score 1) and outcome `table[X][1]` (unknown: 0.5, 0.5)."""

    name = "fake-reward"

    def __init__(self, table: dict[str, tuple[float, float]]):
        self.table = table

    def _lookup(self, text: str) -> tuple[float, float]:
        from magicore.tools.answers import extract_answer

        return self.table.get(extract_answer(text) or "", (0.5, 0.5))

    async def ascore_steps(self, question, steps):
        step, _ = self._lookup("\n".join(steps))
        return [1.0] * (len(steps) - 1) + [step] if steps else []

    async def ascore_outcome(self, question, solution):
        return self._lookup(solution)[1]
