"""Aggregation: majority vote and reward-weighted vote over chains' answers.

Equivalent answers ("1,000", "1000", "$1000") form one group, named by its first member; a
group's weight is the sum of its chains' weights. Which answers form a group does not depend on
their order. Ties go to the answer seen first, which keeps
the result deterministic for a given chain order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from magicore.tools.answers import answers_match, normalize_answer


class HasAnswer(Protocol):
    answer: str | None


@dataclass
class Vote:
    """The outcome of a vote: the winning answer (None if no chain had one) and every group's
    weight, largest first."""

    answer: str | None
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def share(self, answer: str | None = None) -> float:
        """The winning (or given) answer's share of the total weight."""
        answer = self.answer if answer is None else answer
        return self.weights.get(answer, 0.0) / self.total if self.total else 0.0


def group_answers(answers: Iterable[str | None]) -> list[str | None]:
    """For each answer, the representative of its equivalence group (None stays None).

    Equivalence is not transitive ("3.33" matches "10/3", which matches "3.3333", but "3.33"
    does not match "3.3333"), so groups are the connected components of "matches": the same
    groups whatever the order of the answers. A group is named by its first member.
    """
    answers = list(answers)
    firsts: dict[str, str] = {}  # normal form -> its first raw answer, in order of appearance
    for answer in answers:
        if answer is not None:
            firsts.setdefault(normalize_answer(answer), answer)
    normals = list(firsts)
    parent = list(range(len(normals)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(normals)):
        for j in range(i + 1, len(normals)):
            if root(i) != root(j) and answers_match(firsts[normals[i]], firsts[normals[j]]):
                parent[max(root(i), root(j))] = min(root(i), root(j))  # the earlier one names it
    name = {normal: firsts[normals[root(i)]] for i, normal in enumerate(normals)}
    return [None if a is None else name[normalize_answer(a)] for a in answers]


def weighted_vote(chains: Sequence[HasAnswer], weight: Callable[[HasAnswer], float],
                  groups: Sequence[str | None] | None = None) -> Vote:  # fmt: skip
    """Each distinct answer's weight is the sum of `weight(chain)` over its chains.

    Args:
        groups: each chain's group representative, when the task family groups answers its own
            way (programs by behaviour, graphs/grouping.py); by answer equivalence otherwise.
    """
    weights: dict[str, float] = {}
    reps = list(groups) if groups is not None else group_answers(c.answer for c in chains)
    for chain, rep in zip(chains, reps):
        if rep is not None:
            weights[rep] = weights.get(rep, 0.0) + float(weight(chain))
    ordered = dict(sorted(weights.items(), key=lambda kv: -kv[1]))  # stable: first seen wins ties
    return Vote(answer=next(iter(ordered), None), weights=ordered)


def majority_vote(chains: Sequence[HasAnswer], groups: Sequence[str | None] | None = None) -> Vote:
    """Self-consistency: one vote per chain with an answer."""
    return weighted_vote(chains, lambda _chain: 1.0, groups)
