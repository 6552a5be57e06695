"""Custom stream events: what a UI shows while a method runs.

Each is a plain dict with a `type`: chain, scores, route, review, refinement, draft, feedback,
final. Stream them with `graph.astream(..., stream_mode="custom")`.
"""

from __future__ import annotations

from magicore.agents.chain import Chain
from magicore.agents.reviewer import Review
from magicore.graphs.routing import reward
from magicore.graphs.state import RouteDecision


def _chain_view(chain: Chain, index: int | None = None) -> dict:
    view = {"answer": chain.answer, "origin": chain.origin, "round": chain.round, "steps": chain.steps,
            "text": chain.text}  # fmt: skip
    if index is not None:
        view["index"] = index
    if chain.scored:
        view.update(step_scores=chain.step_scores, orm=chain.orm, reward=reward(chain))
    return view


def chain_sampled(chain: Chain, *, index: int, k: int) -> dict:
    return {"type": "chain", "index": index, "k": k, **_chain_view(chain)}


def scores_ready(round_: int, scored: list[Chain], pool: list[Chain], reward_name: str) -> dict:
    return {"type": "scores", "round": round_, "reward": reward_name,
            "scored": [_chain_view(c, i) for i, c in enumerate(scored)],
            "pool": [_chain_view(c, i) for i, c in enumerate(pool)]}  # fmt: skip


def route_decided(decision: RouteDecision, *, will_refine: bool) -> dict:
    return {"type": "route", "will_refine": will_refine, **decision.model_dump()}


def review_written(review: Review) -> dict:
    return {"type": "review", **review.model_dump()}


def refinement_written(refined: Chain, previous: Chain, index: int, tests: list[str] | None = None) -> dict:
    """`tests`: for a program, its results on the question's visible examples."""
    event = {"type": "refinement", "index": index, "previous": previous.text, **_chain_view(refined)}
    if tests is not None:
        event["tests"] = tests
    return event


def draft_written(text: str, answer: str | None, round_: int, tests: list[str] | None = None) -> dict:
    """A Self-Refine draft (round 0) or revision; `tests` as for a refinement."""
    event = {"type": "draft", "round": round_, "text": text, "answer": answer}
    if tests is not None:
        event["tests"] = tests
    return event


def feedback_written(feedback: str, done: bool, round_: int) -> dict:
    return {"type": "feedback", "round": round_, "feedback": feedback, "done": done}


def final(method: str, answer: str | None, votes: dict[str, float], rounds: int) -> dict:
    return {"type": "final", "method": method, "answer": answer, "votes": votes, "rounds": rounds}
