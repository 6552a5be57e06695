"""Which chains state the same answer, per task family: the key the votes and the routing use.

Answers are grouped by equivalence ("1,000" and "1000" are one answer). Programs (the code
family) are grouped by behaviour: their outputs on the question's visible examples and on extra
inputs drawn from them (tools/code_runner.py), not by their text, so two differently written
programs that compute the same function are one answer. A group is named by its first member.
"""

from __future__ import annotations

from collections.abc import Sequence

from magicore.agents.chain import Chain
from magicore.graphs.aggregation import group_answers
from magicore.tools.code_runner import behaviour_keys


async def answer_groups(question: str, family: str | None, chains: Sequence[Chain]) -> list[str | None]:
    """Each chain's group representative (an answer of the group), None for no answer."""
    answers = [c.answer for c in chains]
    if family != "code":
        return group_answers(answers)
    keys = await behaviour_keys(question, answers)
    first: dict[str, str] = {}
    for key, answer in zip(keys, answers):
        if key is not None and answer is not None:
            first.setdefault(key, answer)
    return [None if key is None else first[key] for key in keys]
