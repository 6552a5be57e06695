"""The easy/hard test (step 4 of the method), to the letter of the reference implementation.

R = ORM + prod(step scores) per chain (a chain without a parsable answer has step score 0).

- cond1: the mean z-score (R - mu) / sigma of the chains that agree with the majority answer
  (the most frequent one) is >= 0.
- cond2: the weighted vote over predictions, once weighted by ORM and once by prod(step scores),
  normalised, has confidence 2 * (1 - sigmoid(H)) >= 0.5 for both, H its entropy (natural log).
- hard iff cond1 fails AND (either confidence < 0.5).

Choices where the reference is silent or quirky, stated here once:
- Answers are grouped by equivalence ("1,000" and "1000" are one answer), not by exact string;
  programs (the code family) by behaviour, given as `groups` (graphs/grouping.py).
- As in the reference, chains without an answer form one more prediction bucket in cond2's
  distributions; they cannot be the majority answer (the majority is over stated answers).
- When no chain states an answer there is no majority: cond1 fails.
- A distribution whose weights sum to 0 carries no information: its confidence is 0.
- sigma = 0 (every calibration chain had the same R) gives z = 0 for every chain.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from magicore.graphs.aggregation import group_answers
from magicore.tools.rewards.base import chain_reward

Z_THRESHOLD = 0.0
CONFIDENCE_THRESHOLD = 0.5


class ScoredChain(Protocol):
    answer: str | None
    orm: float
    step_scores: list[float]


@dataclass(frozen=True)
class Difficulty:
    hard: bool
    cond1: bool
    orm_confidence: float
    prm_confidence: float
    majority: str | None
    mean_z: float | None


def step_product(chain: ScoredChain) -> float:
    """prod(step scores), 0 for a chain without a parsable answer."""
    if chain.answer is None or not chain.step_scores:
        return 0.0
    return math.prod(chain.step_scores)


def reward(chain: ScoredChain) -> float:
    return chain_reward(chain.orm, [step_product(chain)])


def entropy(weights: Sequence[float]) -> float:
    """Shannon entropy (natural log) of the normalised weights."""
    total = sum(weights)
    return -sum((w / total) * math.log(w / total) for w in weights if w > 0)


def confidence(weights: Sequence[float]) -> float:
    """2 * (1 - sigmoid(H)): 1 for a single answer, falling as the vote spreads."""
    if sum(weights) <= 0:
        return 0.0
    h = entropy(weights)
    return 2.0 * (1.0 - 1.0 / (1.0 + math.exp(-h)))


def majority_of(representatives: Sequence[str | None]) -> str | None:
    """The most frequent stated answer among grouped answers (ties: first seen)."""
    stated = [r for r in representatives if r is not None]
    return Counter(stated).most_common(1)[0][0] if stated else None


def classify_difficulty(
    chains: Sequence[ScoredChain],
    mu: float,
    sigma: float,
    *,
    z_threshold: float = Z_THRESHOLD,
    confidence_threshold: float = CONFIDENCE_THRESHOLD,
    groups: Sequence[str | None] | None = None,
) -> Difficulty:
    """Whether a question is hard, from its scored chains and the calibration (mu, sigma).

    The thresholds are the reference's: cond1 is mean z >= `z_threshold` (0), cond2 is both
    confidences >= `confidence_threshold` (0.5). `groups` gives each chain's group
    representative when the task family groups its own way (by answer equivalence otherwise).
    """
    if not chains:
        raise ValueError("no chains to classify")
    reps = list(groups) if groups is not None else group_answers(c.answer for c in chains)
    majority = majority_of(reps)

    z_scores = [
        (reward(c) - mu) / sigma if sigma > 0 else 0.0
        for c, rep in zip(chains, reps)
        if majority is not None and rep == majority
    ]
    mean_z = sum(z_scores) / len(z_scores) if z_scores else None
    cond1 = mean_z is not None and mean_z >= z_threshold

    orm_votes: dict[str | None, float] = {}
    prm_votes: dict[str | None, float] = {}
    for chain, rep in zip(chains, reps):
        orm_votes[rep] = orm_votes.get(rep, 0.0) + float(chain.orm)
        prm_votes[rep] = prm_votes.get(rep, 0.0) + step_product(chain)
    orm_conf = confidence(list(orm_votes.values()))
    prm_conf = confidence(list(prm_votes.values()))

    hard = (not cond1) and (orm_conf < confidence_threshold or prm_conf < confidence_threshold)
    return Difficulty(hard, cond1, orm_conf, prm_conf, majority, mean_z)
