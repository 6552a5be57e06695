"""The baselines, built from the same nodes as MAgICoRe.

- Self-Consistency: sample k, majority vote.
- Best-of-k: sample k, score, the answer of the chain with the highest R.
- Self-Refine: one chain; the same model writes feedback, then revises with the full history of
  drafts and feedback; it stops when the feedback says the solution is correct, or after
  `self_refine_rounds` rounds of feedback.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import Overwrite, RetryPolicy, StreamWriter

from magicore.agents.self_refiner import SelfRefiner
from magicore.agents.solver import Solver
from magicore.graphs import events
from magicore.graphs.compat import graph_node
from magicore.graphs.config import MethodConfig
from magicore.graphs.evidence import tests_to_show
from magicore.graphs.nodes import make_aggregate, make_finish, make_score, make_solve
from magicore.graphs.state import Draft, GraphInput, GraphOutput, State, usage_update
from magicore.tools.code_runner import PROGRAM_RUNS
from magicore.tools.rewards.base import RewardModel


class SelfRefineState(State, total=False):
    done: bool  # the last feedback said the solution is correct


def self_consistency(solver: Solver, config: MethodConfig, retry: RetryPolicy) -> StateGraph:
    g = StateGraph(State, input_schema=GraphInput, output_schema=GraphOutput)
    g.add_node("solve", make_solve(solver, config), retry_policy=retry)
    g.add_node("aggregate", make_aggregate("majority"))
    g.add_node("finish", make_finish("sc"))
    g.add_edge(START, "solve")
    g.add_edge("solve", "aggregate")
    g.add_edge("aggregate", "finish")
    g.add_edge("finish", END)
    return g


def best_of_k(solver: Solver, reward: RewardModel, config: MethodConfig, retry: RetryPolicy) -> StateGraph:
    g = StateGraph(State, input_schema=GraphInput, output_schema=GraphOutput)
    g.add_node("solve", make_solve(solver, config), retry_policy=retry)
    g.add_node("score", make_score(reward, config), retry_policy=retry)
    g.add_node("aggregate", make_aggregate("best"))
    g.add_node("finish", make_finish("bok"))
    g.add_edge(START, "solve")
    g.add_edge("solve", "score")
    g.add_edge("score", "aggregate")
    g.add_edge("aggregate", "finish")
    g.add_edge("finish", END)
    return g


def self_refine(solver: Solver, agent: SelfRefiner, config: MethodConfig, retry: RetryPolicy) -> StateGraph:
    async def tests(question: str, family: str | None, chain) -> list[str] | None:
        """For a program, its run on the question's visible examples (what the UI shows under
        the draft; remembered, so a reward that runs it again pays nothing)."""
        return await tests_to_show(PROGRAM_RUNS, question, chain) if family == "code" else None

    async def draft(state: State, writer: StreamWriter) -> dict:
        update = await make_solve(solver, config, k=1).afunc(state, writer)
        chain = update["pending"].value[0]  # an Overwrite: the run starts afresh
        writer(events.draft_written(chain.text, chain.answer, 0,
                                    tests=await tests(state["question"], update.get("task_family"), chain)))  # fmt: skip
        return {**update, "pending": Overwrite([]), "drafts": [Draft(text=chain.text, answer=chain.answer)],
                "answer": chain.answer, "votes": {chain.answer: 1.0} if chain.answer else {}, "done": False}  # fmt: skip

    async def feedback(state: SelfRefineState, writer: StreamWriter) -> dict:
        drafts = list(state["drafts"])
        text, done, used = await agent.afeedback(state["question"], [d.model_dump() for d in drafts])
        drafts[-1] = drafts[-1].model_copy(update={"feedback": text})
        writer(events.feedback_written(text, done, state.get("round", 0)))
        return {"drafts": drafts, "usage": usage_update("reviewer", used), "done": done}

    # LangGraph reads a function's state annotation as its input schema: these need `done`.
    def after_feedback(state: SelfRefineState) -> str:
        return "finish" if state.get("done") else "revise"

    def after_revise(state: State) -> str:
        return "finish" if state.get("round", 0) >= config.self_refine_rounds else "feedback"

    async def revise(state: State, writer: StreamWriter) -> dict:
        round_ = state.get("round", 0) + 1
        chain, used = await agent.arevise(state["question"], [d.model_dump() for d in state["drafts"]],
                                          family=state.get("task_family") or "word", round=round_)  # fmt: skip
        writer(events.draft_written(chain.text, chain.answer, round_,
                                    tests=await tests(state["question"], state.get("task_family"), chain)))  # fmt: skip
        drafts = [*state["drafts"], Draft(text=chain.text, answer=chain.answer)]
        return {"drafts": drafts, "round": round_, "answer": chain.answer,
                "votes": {chain.answer: 1.0} if chain.answer else {}, "usage": usage_update("refiner", used)}  # fmt: skip

    g = StateGraph(SelfRefineState, input_schema=GraphInput, output_schema=GraphOutput)
    g.add_node("draft", graph_node(draft), retry_policy=retry)
    g.add_node("feedback", graph_node(feedback), retry_policy=retry)
    g.add_node("revise", graph_node(revise), retry_policy=retry)
    g.add_node("finish", make_finish("self-refine"))
    g.add_edge(START, "draft")
    g.add_edge("draft", "feedback")
    g.add_conditional_edges("feedback", after_feedback, ["revise", "finish"])
    g.add_conditional_edges("revise", after_revise, ["feedback", "finish"])
    g.add_edge("finish", END)
    return g
