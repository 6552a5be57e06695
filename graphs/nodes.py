"""The graph nodes, shared by MAgICoRe and the baselines.

Each factory closes over the agents and settings it needs and returns an async node. Nodes
emit custom stream events (see `graphs/events.py`) so a UI can show each step as it happens.
Review and refine run once per chain, fanned out with `Send`; `sample` bounds the requests in
flight per server, so k branches do not flood it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from langgraph.types import Command, Overwrite, Send, StreamWriter

from magicore.agents.chain import Chain
from magicore.agents.prompts import detect_family
from magicore.agents.questions import check_question
from magicore.agents.refiner import Refiner
from magicore.agents.reviewer import Reviewer
from magicore.agents.solver import Solver
from magicore.graphs import events
from magicore.graphs.aggregation import Vote, majority_vote, weighted_vote
from magicore.graphs.calibration import self_calibration
from magicore.graphs.compat import graph_node
from magicore.graphs.config import MethodConfig
from magicore.graphs.evidence import tests_to_show
from magicore.graphs.grouping import answer_groups
from magicore.graphs.routing import classify_difficulty, reward as chain_r
from magicore.graphs.state import BranchState, RouteDecision, State, usage_update
from magicore.tools import telemetry
from magicore.tools.code_runner import PROGRAM_RUNS
from magicore.tools.usage import track_usage
from magicore.tools.steps import bound_solution
from magicore.tools.rewards.base import RewardModel

Aggregation = Literal["weighted", "majority", "best"]


def make_solve(solver: Solver, config: MethodConfig, *, k: int | None = None):
    k = k or config.k

    async def solve(state: State, writer: StreamWriter) -> dict:
        question = check_question(state.get("question"))  # a graph used directly gets asolve's checks
        family = state.get("family") or detect_family(question)
        arrived = 0

        def on_chain(chain: Chain) -> None:
            nonlocal arrived
            arrived += 1
            writer(events.chain_sampled(chain, index=arrived - 1, k=k))

        result = await solver.asolve(question, k=k, family=family, on_chain=on_chain)
        return {**fresh_run(), "task_family": family, "pending": Overwrite(result.chains),
                "usage": Overwrite(usage_update("solver", result.usage))}  # fmt: skip

    return graph_node(solve)


def fresh_run() -> dict:
    """The update that starts a run: every working and output key back to its empty value (with
    `Overwrite` where a reducer would add to the previous run's). Without it a graph with a
    checkpointer, asked a new question on a thread that answered one, would add the old chains,
    reviews, route and usage to the new run's."""
    return {"pending": Overwrite([]), "pool": [], "latest": [], "round": 0, "reviews": Overwrite([]),
            "refinements": Overwrite([]), "route": Overwrite([]), "drafts": [], "usage": Overwrite({}),
            "answer": None, "votes": {}, "rounds": 0}  # fmt: skip


async def score_chain(reward: RewardModel, question: str, chain: Chain, *, index: int | None = None) -> Chain:
    """The chain with its step scores, outcome score and their components filled in.

    Traced as `execute_tool reward_model`, saying which chain it scored (`magicore.chain.index`,
    its place among the chains scored together, and `magicore.round`) and linked to the LLM call
    that wrote the chain, with one `gen_ai.evaluation.result` event per step score and one for
    the outcome score (a span that has ended cannot take events, so they sit on the scoring span).
    """
    attributes = {"magicore.reward": reward.name, "magicore.round": chain.round, "magicore.answer": str(chain.answer),
                  "magicore.chain.index": index, "magicore.chain.origin": chain.origin,
                  "magicore.chain.parent": chain.parent}  # fmt: skip
    with telemetry.span("execute_tool reward_model", links=telemetry.link_to(chain.trace_link), attributes={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "reward_model", **attributes,
    }) as span:  # fmt: skip
        # Every chain's steps are scored, so the Reviewer sees a score on each step; a chain
        # without a parsable answer still gets step score 0 in R (Chain.reward, step_product).
        if chain.steps:
            step_task = reward.ascore_steps_detailed(question, chain.steps)
        else:
            step_task = asyncio.sleep(0, result=([0.0], {}))
        (steps, step_parts), (orm, orm_parts) = await asyncio.gather(
            step_task, reward.ascore_outcome_detailed(question, bound_solution(chain.text))
        )
        for i, value in enumerate(steps):
            telemetry.record_evaluation(span, "magicore.step_score", value, **{"magicore.step.index": i})
        telemetry.record_evaluation(span, "magicore.outcome_score", orm)
        scored = chain.model_copy(update={"step_scores": list(steps), "orm": float(orm),
                                          "components": {"steps": step_parts, "outcome": orm_parts}})  # fmt: skip
        telemetry.set_attributes(span, {"magicore.reward.value": chain_r(scored)})
    return scored


def top_k(chains: list[Chain], keep: int) -> list[Chain]:
    """The `keep` chains with the highest R; ties keep their order (older chains first)."""
    return sorted(chains, key=lambda c: -chain_r(c))[:keep]


def make_score(reward: RewardModel, config: MethodConfig):
    keep = config.keep or config.k

    async def score(state: State, writer: StreamWriter) -> dict:
        pending = state.get("pending") or []
        with track_usage() as used:
            batch = [c.steps for c in pending if c.steps]
            with telemetry.tool_span("reward_model", **{"magicore.reward": reward.name, "magicore.reward.batch": len(batch)}):
                await reward.aprepare(state["question"], batch)  # batched work, e.g. one sandbox run
            scored = await asyncio.gather(*(score_chain(reward, state["question"], c, index=i)
                                            for i, c in enumerate(pending)))  # fmt: skip
        round_ = max((c.round for c in scored), default=state.get("round", 0))
        pool = top_k(list(state.get("pool") or []) + list(scored), keep)
        writer(events.scores_ready(round_, scored, pool, reward.name))
        return {"pending": Overwrite([]), "pool": pool, "latest": list(scored), "round": round_,
                "usage": usage_update("reward", used)}  # fmt: skip

    return graph_node(score)


def vote(chains: list[Chain], how: Aggregation, groups: list[str | None] | None = None) -> Vote:
    """The method's vote; `groups` names each chain's answer group (graphs/grouping.py)."""
    if how == "majority":
        return majority_vote(chains, groups)
    if how == "weighted":
        return weighted_vote(chains, chain_r, groups)
    best = max((c for c in chains if c.parsed), key=chain_r, default=None)  # Best-of-k
    if best is None:
        return Vote(answer=None)
    return Vote(answer=best.answer, weights={best.answer: chain_r(best)})


def make_aggregate(how: Aggregation):
    async def aggregate(state: State) -> dict:
        update: dict = {}
        chains = state.get("pool")
        if not chains:  # Self-Consistency votes over the samples as drawn: they are its pool
            chains = update["pool"] = list(state.get("pending") or [])
        groups = None if how == "best" else await answer_groups(state["question"], state.get("task_family"), chains)
        result = vote(chains, how, groups)
        return {**update, "answer": result.answer, "votes": result.weights}

    return graph_node(aggregate)


def make_route(config: MethodConfig, evidence=None):
    def to_refine(state: State, round_: int) -> list[Chain]:
        """The chains a hard round reviews and refines: the top-k pool, or with
        refine="latest" (the reference code) the previous round's refinements."""
        if config.refine == "latest" and round_ > 0 and state.get("latest"):
            return list(state["latest"])
        return list(state["pool"])

    async def route(state: State, writer: StreamWriter) -> dict:
        pool = state["pool"]
        cal = state.get("calibration") or config.calibration or self_calibration(pool)
        groups = await answer_groups(state["question"], state.get("task_family"), pool)
        d = classify_difficulty(pool, cal.mu, cal.sigma, z_threshold=config.z_threshold,
                                confidence_threshold=config.confidence_threshold, groups=groups)
        round_ = state.get("round", 0)
        forced = config.route == "all" and round_ == 0 and not d.hard
        decision = RouteDecision(round=round_, hard=d.hard or forced, cond1=d.cond1, mean_z=d.mean_z,
                                 orm_confidence=d.orm_confidence, prm_confidence=d.prm_confidence,
                                 majority=d.majority, calibration=cal.source, forced=forced)  # fmt: skip
        will_refine = decision.hard and decision.round < config.rounds
        if will_refine and evidence is not None and hasattr(evidence, "prepare"):
            chains = to_refine(state, decision.round)
            with telemetry.tool_span("evidence", **{"magicore.round": decision.round, "magicore.chains": len(chains)}):
                await evidence.prepare(state["question"], chains, family=state.get("task_family"))  # one batched check before the fan-out
        telemetry.add_event("magicore.route", {
            "magicore.round": decision.round, "magicore.route.hard": decision.hard, "magicore.route.forced": forced,
            "magicore.route.cond1": d.cond1,
            "magicore.route.mean_z": d.mean_z, "magicore.route.orm_confidence": d.orm_confidence,
            "magicore.route.prm_confidence": d.prm_confidence, "magicore.route.majority": d.majority,
            "magicore.route.refine": will_refine, "magicore.calibration.mu": cal.mu,
            "magicore.calibration.sigma": cal.sigma, "magicore.calibration.source": cal.source,
        })  # fmt: skip
        writer(events.route_decided(decision, will_refine=will_refine))
        return {"route": [decision]}

    def after_route(state: State) -> list[Send] | str:
        decision = state["route"][-1]
        if not (decision.hard and decision.round < config.rounds):
            return "finish"
        chains = to_refine(state, decision.round)
        return [
            Send("review", BranchState(question=state["question"], family=state.get("task_family") or "word",
                                       round=decision.round, index=i, chain=chain, review=None))  # fmt: skip
            for i, chain in enumerate(chains)
        ]

    return graph_node(route), after_route


def make_review(reviewer: Reviewer, evidence: Callable | None):
    async def review(branch: BranchState, writer: StreamWriter) -> Command:
        chain = branch["chain"]
        lines = await evidence(branch["question"], chain, family=branch["family"]) if evidence else []
        result, used = await reviewer.areview(branch["question"], chain, index=branch["index"],
                                              evidence=lines, family=branch["family"])  # fmt: skip
        result = result.model_copy(update={"round": branch["round"]})
        writer(events.review_written(result))
        return Command(
            update={"reviews": [result], "usage": usage_update("reviewer", used)},
            goto=Send("refine", {**branch, "review": result}),
        )

    return graph_node(review)


def make_refine(refiner: Refiner):
    async def refine(branch: BranchState, writer: StreamWriter) -> dict:
        refined, used = await refiner.arefine(branch["question"], branch["chain"], branch["review"],
                                              round=branch["round"] + 1, family=branch["family"])  # fmt: skip
        # a program's run on the visible examples (remembered: the next scoring reuses it)
        tests = await tests_to_show(PROGRAM_RUNS, branch["question"], refined) if branch["family"] == "code" else None
        writer(events.refinement_written(refined, branch["chain"], branch["index"], tests=tests))
        return {"pending": [refined], "refinements": [refined], "usage": usage_update("refiner", used)}

    return graph_node(refine)


def make_finish(method: str):
    async def finish(state: State, writer: StreamWriter) -> dict:
        rounds = state.get("round", 0)
        writer(events.final(method, state.get("answer"), state.get("votes") or {}, rounds))
        return {"rounds": rounds}

    return graph_node(finish)
