"""Solve one question with a method and get a RunResult (the CLI's and UI's entry point)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel

from magicore.agents.coalesce import run_scope
from magicore.agents.questions import check_question
from magicore.graphs.build import build_graph
from magicore.graphs.config import MethodConfig
from magicore.graphs.result import RunResult
from magicore.graphs.state import USAGE_KEYS, Calibration
from magicore.graphs.tracing import record_result, trace_id_of, workflow_span
from magicore.tools import inflight
from magicore.tools.cancellation import cancel_once
from magicore.tools.rewards.base import RewardModel
from magicore.tools.run_sync import run_sync


def result_from_state(question: str, method: str, state: dict[str, Any], seconds: float) -> RunResult:
    usage = state.get("usage") or {}
    totals = {key: sum(role.get(key, 0) for role in usage.values()) for key in USAGE_KEYS}
    chains = list(state.get("pool") or state.get("pending") or [])
    return RunResult(
        question=question,
        answer=state.get("answer"),
        method=method,
        votes=state.get("votes") or {},
        seconds=seconds,
        chains=chains,
        rounds=state.get("rounds", 0),
        route=[d.model_dump() for d in state.get("route") or []],
        usage_by_role=usage,
        reviews=[r.model_dump() for r in state.get("reviews") or []],
        refinements=list(state.get("refinements") or []),
        drafts=[d.model_dump() for d in state.get("drafts") or []],
        **totals,
    )


async def asolve(
    question: str,
    *,
    method: str = "magicore",
    model: BaseChatModel | str | None = None,
    reviewer_model: BaseChatModel | str | None = None,
    refiner_model: BaseChatModel | str | None = None,
    reward: RewardModel | str | None = None,
    config: MethodConfig | None = None,
    family: str | None = None,
    calibration: Calibration | None = None,
    on_event: Callable[[dict], None] | None = None,
    on_token: Callable[[dict], None] | None = None,
    graph=None,
    run_config: dict | None = None,
    session_id: str | None = None,
    reviewer_tools: bool = False,
) -> RunResult:
    """Run `method` on one question.

    Args:
        model: a LangChain chat model or a model spec string ("embedded", "MODEL@URL", ...);
            required unless `graph` is given.
        on_event: called with every progress event (graphs/events.py) as it happens.
        on_token: called with each piece of text a model writes, as it is written: a dict with
            `text`, `call` (one id per model call), `node` (solve, review, refine...) and
            `role`. Only calls the server answers one completion at a time stream (n=1: the
            embedded model, llama.cpp, Ollama; a server honouring n=k answers at once).
        graph: a graph from `build_graph` to reuse (the other model arguments are then unused).
        run_config: LangGraph run config (thread_id for a checkpointer, callbacks, tags...).
        session_id: the conversation this question belongs to, put on every span.
        reviewer_tools: let a tool-calling Reviewer run code in the sandbox itself.
    """
    question = check_question(question)
    graph = graph or build_graph(method, model=model, reviewer_model=reviewer_model, refiner_model=refiner_model,
                                 reward=reward, config=config, reviewer_tools=reviewer_tools,
                                 family=family)  # fmt: skip
    inputs: dict[str, Any] = {"question": question}
    if family:
        inputs["family"] = family
    if calibration:
        inputs["calibration"] = calibration
    method_name = graph.name.removeprefix("magicore-") if graph.name else method
    with workflow_span(method_name, question, session_id=session_id) as span, inflight.track() as servers, \
            run_scope():  # a batch of model calls never mixes two runs' usage (agents/coalesce.py)
        started = time.perf_counter()
        modes = ["custom", "values", *(["messages"] if on_token is not None else [])]

        async def run() -> dict[str, Any]:
            state: dict[str, Any] = {}
            async for mode, payload in graph.astream(inputs, run_config, stream_mode=modes):
                if mode == "custom" and on_event is not None:
                    on_event(payload)
                elif mode == "values":
                    state = payload
                elif mode == "messages" and on_token is not None:
                    token = token_event(*payload)
                    if token is not None:
                        on_token(token)
            return state

        # Cancelled (a client gone, a cancel scope, Ctrl-C), the run stops its running model calls
        # before this returns, however often the cancellation is repeated (tools/cancellation.py).
        state = await cancel_once(run())
        result = result_from_state(question, method_name, state, time.perf_counter() - started)
        result.trace_id = trace_id_of(span)
        result.inflight = inflight.reports(servers)
        record_result(span, result)
    return result


#: Which role a graph node's model calls speak for.
NODE_ROLES = {"solve": "solver", "draft": "solver", "review": "reviewer", "feedback": "reviewer",
              "refine": "refiner", "revise": "refiner", "score": "reward"}  # fmt: skip


def token_event(chunk: Any, metadata: dict) -> dict | None:
    """A streamed `messages`-mode chunk as an `on_token` event (None for one without text, and
    for a whole message: the answer of a call that was not streamed)."""
    from langchain_core.messages import BaseMessageChunk

    if not isinstance(chunk, BaseMessageChunk):
        return None
    content = getattr(chunk, "content", None)
    text = content if isinstance(content, str) else str(getattr(chunk, "text", "") or "")
    if not text:
        return None
    node = (metadata or {}).get("langgraph_node")
    return {"type": "token", "text": text, "call": getattr(chunk, "id", None), "node": node,
            "role": NODE_ROLES.get(node or "", node)}  # fmt: skip


def solve(question: str, **kwargs) -> RunResult:
    """Synchronous `asolve`, for scripts and notebooks: it also works where an event loop
    already runs (a Jupyter cell), by running the question on a worker thread's own loop."""
    return run_sync(asolve(question, **kwargs))
