"""The MAgICoRe graph (docs/methods.md).

    solve -> score -> aggregate -> route --easy or T rounds done--> finish
                ^                    |
                |                  hard
              refine <- review <-----+   (one review and one refinement per pool chain, via Send)

The pool after each scoring is the previous pool plus the new chains, top-k by R; the majority
and the easy/hard test are recomputed every round, and a refined question never goes back to
its round-0 chains.
"""

from __future__ import annotations

from collections.abc import Callable

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from magicore.agents.refiner import Refiner
from magicore.agents.reviewer import Reviewer
from magicore.agents.solver import Solver
from magicore.graphs.config import MethodConfig
from magicore.graphs.nodes import (
    make_aggregate, make_finish, make_refine, make_review, make_route, make_score, make_solve,
)  # fmt: skip
from magicore.graphs.state import GraphInput, GraphOutput, State
from magicore.tools.rewards.base import RewardModel


def magicore_graph(
    solver: Solver,
    reviewer: Reviewer,
    refiner: Refiner,
    reward: RewardModel,
    config: MethodConfig,
    retry: RetryPolicy,
    evidence: Callable | None = None,
) -> StateGraph:
    route, after_route = make_route(config, evidence)
    g = StateGraph(State, input_schema=GraphInput, output_schema=GraphOutput)
    g.add_node("solve", make_solve(solver, config), retry_policy=retry)
    g.add_node("score", make_score(reward, config), retry_policy=retry)
    g.add_node("aggregate", make_aggregate("weighted"))
    g.add_node("route", route)
    g.add_node("review", make_review(reviewer, evidence), retry_policy=retry, destinations=("refine",))
    g.add_node("refine", make_refine(refiner), retry_policy=retry)
    g.add_node("finish", make_finish("magicore"))
    g.add_edge(START, "solve")
    g.add_edge("solve", "score")
    g.add_edge("score", "aggregate")
    g.add_edge("aggregate", "route")
    g.add_conditional_edges("route", after_route, ["review", "finish"])
    g.add_edge("refine", "score")
    g.add_edge("finish", END)
    return g
