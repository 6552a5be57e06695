"""The graphs' state: a TypedDict with explicit reducers; pydantic models for the values inside.

`pending` holds chains waiting to be scored (from the Solver or the Refiner); the score node
moves them into `pool` and clears `pending` with `Overwrite`. `usage` is per role and summed
across parallel branches by `merge_usage`.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from pydantic import BaseModel
from typing_extensions import Required, TypedDict  # typing has Required from Python 3.11 only

from magicore.agents.chain import Chain
from magicore.agents.reviewer import Review

USAGE_KEYS = ("llm_calls", "requests", "input_tokens", "output_tokens")


class Calibration(BaseModel):
    """Mean and standard deviation of the chain reward R over a calibration population."""

    mu: float
    sigma: float
    source: str = "given"  # "batch", "file:PATH", "self" (the question's own chains), "given"
    n: int | None = None


class RouteDecision(BaseModel):
    """One easy/hard evaluation (step 4 of the method, graphs/routing.py)."""

    round: int
    hard: bool
    cond1: bool
    mean_z: float | None
    orm_confidence: float
    prm_confidence: float
    majority: str | None
    calibration: str = ""
    #: Hard because `route="all"` refines every problem in round 0, not because the test said so.
    forced: bool = False


class Draft(BaseModel):
    """Self-Refine's history: a draft and the feedback it received."""

    text: str
    answer: str | None
    feedback: str | None = None


def merge_usage(left: dict[str, dict[str, int]] | None, right: dict[str, dict[str, int]] | None):
    """Sum per-role usage dicts: {"solver": {"llm_calls": 8, ...}, "judge": {...}}."""
    out = {role: dict(values) for role, values in (left or {}).items()}
    for role, values in (right or {}).items():
        mine = out.setdefault(role, dict.fromkeys(USAGE_KEYS, 0))
        for key in USAGE_KEYS:
            mine[key] = mine.get(key, 0) + int(values.get(key, 0))
    return out


def usage_update(role: str, usage: Any) -> dict[str, dict[str, int]]:
    """A `usage` state update for one role from a `magicore.tools.usage.Usage`."""
    return {role: {key: int(getattr(usage, key)) for key in USAGE_KEYS}}


class State(TypedDict, total=False):
    # input
    question: str
    family: str | None  # "word", "math", "mcq"; guessed when absent
    calibration: Calibration | None
    # working state (the first node of a run resets all of it and the output: a checkpointed
    # thread asked a new question starts from nothing but the new input)
    task_family: str  # the family in use: the input's, else guessed from the question
    pending: Annotated[list[Chain], operator.add]
    pool: list[Chain]
    latest: list[Chain]  # the chains the last score node scored (the newest refinements)
    round: int
    reviews: Annotated[list[Review], operator.add]
    refinements: Annotated[list[Chain], operator.add]  # every refined chain, kept or not
    route: Annotated[list[RouteDecision], operator.add]
    drafts: list[Draft]
    usage: Annotated[dict[str, dict[str, int]], merge_usage]
    # output
    answer: str | None
    votes: dict[str, float]
    rounds: int  # refinement rounds run


class GraphInput(TypedDict, total=False):
    """What a method graph takes: the question, and optionally its task family and calibration."""

    question: Required[str]
    family: str | None
    calibration: Calibration | None


class GraphOutput(TypedDict, total=False):
    """What a method graph returns (`ainvoke`, `stream_mode="values"`) and writes back into a
    parent graph that adds it as a node: these keys and no working state (`pending`, `latest`,
    `round`, `task_family`, `family`, `calibration`, Self-Refine's `done`). A parent's key of the same name is
    overwritten by the subgraph's value; a parent that uses one of these names for something
    else calls the graph from a node of its own and maps the keys (docs/methods.md)."""

    answer: str | None  # the final answer; None when no chain stated one
    votes: dict[str, float]  # weight per answer in the final vote
    rounds: int  # refinement rounds run
    route: Annotated[list[RouteDecision], operator.add]  # one per easy/hard evaluation (MAgICoRe)
    usage: Annotated[dict[str, dict[str, int]], merge_usage]  # per role: llm_calls, requests, tokens
    pool: list[Chain]  # the final pool of chains (scored, for MAgICoRe and Best-of-k)
    reviews: Annotated[list[Review], operator.add]  # every review written (MAgICoRe)
    refinements: Annotated[list[Chain], operator.add]  # every refined chain, kept or not (MAgICoRe)
    drafts: list[Draft]  # Self-Refine's drafts and the feedback each received


class BranchState(TypedDict):
    """What one fan-out branch (review or refine of one chain) receives through `Send`."""

    question: str
    family: str
    round: int
    index: int
    chain: Chain
    review: Review | None
