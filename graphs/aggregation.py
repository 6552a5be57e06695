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

from magicore.tools.answers import answers_match, exact_key, normalize_answer


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
    does not match "3.3333"), so groups are the connected components of "matches" (in either
    direction: math-verify's match is not symmetric either): the same
    groups whatever the order of the answers. A group is named by its first member.
    """
    answers = list(answers)
    normal_of: dict[str, str] = {}  # raw answer -> its normal form, each computed once
    firsts: dict[str, str] = {}  # normal form -> its first raw answer, in order of appearance
    for answer in answers:
        if answer is not None and answer not in normal_of:
            normal_of[answer] = normalize_answer(answer)
            firsts.setdefault(normal_of[answer], answer)
    normals = list(firsts)
    parent = list(range(len(normals)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        parent[max(a, b)] = min(a, b)  # the earlier one names it

    # Answers with an exact key (numbers shown with fewer than two decimals) match each other
    # exactly when their keys are equal: they are grouped by key instead of compared pair by
    # pair, which with k distinct answers was k^2 comparisons (most of Self-Consistency's client
    # time at k=32). Every pair involving another answer is compared as before.
    by_key: dict = {}
    rest: list[int] = []
    for i, normal in enumerate(normals):
        key = exact_key(normal)
        if key is None:
            rest.append(i)
        elif key in by_key:
            join(by_key[key], i)
        else:
            by_key[key] = i
    compared = set()
    for i in rest:
        compared.add(i)
        for j in range(len(normals)):
            if j not in compared and root(i) != root(j) and _match_either_way(firsts[normals[i]], firsts[normals[j]]):
                join(i, j)
    name = {normal: firsts[normals[root(i)]] for i, normal in enumerate(normals)}
    return [None if a is None else name[normal_of[a]] for a in answers]


def _match_either_way(a: str, b: str) -> bool:
    """`answers_match` in either direction: math-verify reads its first argument as the reference,
    so "3" does not match "x+1=3" while "x+1=3" matches "3"; one direction would make the groups
    depend on the order the answers came in."""
    return answers_match(a, b) or answers_match(b, a)


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
