"""Solve one question with a method and get a RunResult."""

from __future__ import annotations

import time
from collections.abc import Callable

from langchain_core.language_models import BaseChatModel

from magicore.agents.chain import Chain
from magicore.agents.solver import Solver, SolverConfig
from magicore.graphs.aggregation import majority_vote
from magicore.graphs.result import RunResult


async def asolve(
    question: str,
    *,
    model: BaseChatModel,
    config: SolverConfig | None = None,
    family: str | None = None,
    on_chain: Callable[[Chain], None] | None = None,
) -> RunResult:
    """Self-consistency: sample k chains and take the majority answer."""
    started = time.perf_counter()
    solved = await Solver(model, config).asolve(question, family=family, on_chain=on_chain)
    vote = majority_vote(solved.chains)
    return RunResult(
        question=question,
        answer=vote.answer,
        method="sc",
        votes=vote.weights,
        chains=solved.chains,
        seconds=time.perf_counter() - started,
        **solved.usage.as_dict(),
    )
