"""magicore inside other LangGraph and LangChain code: the run's callbacks reach every model call
(`messages` streaming, `astream_events`, tracers, usage), the output schema, the synchronous
API, checkpointers, and the public package. Scripted fake models throughout (exact tests)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

import magicore
from magicore import build_graph, serializer
from magicore.graphs.config import MethodConfig
from magicore.graphs.state import Calibration, GraphOutput
from magicore.testing import FakeAnswerReward, RoleScriptedModel, solution

QUESTION = "A question whose answer is 8."
CAL = Calibration(mu=1.0, sigma=0.2)
# R = ORM + product of step scores; with mu = 1, sigma = 0.2: "8" scores R = 1.8, the others 0.5
REWARD = FakeAnswerReward({"8": (0.9, 0.9), **{a: (0.3, 0.2) for a in "5679"}})


def scripted(solver_answers, *, honours_n=True):
    return RoleScriptedModel({
        "solver": lambda n, _m: solution(solver_answers[n % len(solver_answers)]),
        "reviewer": lambda n, _m: "Step 2 is wrong: recompute it.",
        "refiner": lambda n, _m: solution("8"),
    }, honours_n=honours_n)  # fmt: skip


def graph_of(model, *, k=4, rounds=2, **kwargs):
    return build_graph("magicore", model=model, reward=REWARD, config=MethodConfig(k=k, rounds=rounds, calibration=CAL),
                       **kwargs)  # fmt: skip


INPUT = {"question": QUESTION, "calibration": CAL}


class Recorder(BaseCallbackHandler):
    """A plain LangChain callback handler, as LangSmith's tracer or any app's own would be."""

    def __init__(self):
        self.starts, self.ends, self.tokens = [], [], []

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, metadata=None, **kwargs):
        self.starts.append({"run_id": run_id, "parent": parent_run_id, "node": (metadata or {}).get("langgraph_node")})

    def on_llm_end(self, response, *, run_id, **kwargs):
        self.ends.append(response)

    def on_llm_new_token(self, token, **kwargs):
        self.tokens.append(token)


# ---------------------------------------------------------------------------------------------
# the run's callbacks reach every model call


async def test_a_langchain_callback_handler_sees_every_model_call_as_a_child_of_its_node():
    model = scripted(["5", "6", "7", "9"])  # hard: one round of review and refinement
    recorder = Recorder()
    final = await graph_of(model, rounds=1).ainvoke(INPUT, {"callbacks": [recorder]})
    assert final["rounds"] == 1
    nodes = [s["node"] for s in recorder.starts]
    # one n=4 request from the Solver, then a review and a refinement per chain
    assert sorted(nodes) == sorted(["solve"] + ["review"] * 4 + ["refine"] * 4)
    assert all(s["parent"] is not None for s in recorder.starts)  # children of the node runs
    # usage is counted from the same results the handler saw
    completions = sum(len(r.generations[0]) for r in recorder.ends)
    assert completions == sum(role["llm_calls"] for role in final["usage"].values()) == 12
    assert sum(role["requests"] for role in final["usage"].values()) == len(recorder.ends) == 9


async def test_messages_mode_streams_the_solvers_text_as_it_is_written():
    model = scripted(["8"], honours_n=False)  # a server that ignores n: one request per chain
    graph = graph_of(model, k=2)
    pieces: dict[str, list[str]] = {}
    async for chunk, metadata in graph.astream(INPUT, stream_mode="messages"):
        if metadata["langgraph_node"] == "solve" and chunk.content:
            pieces.setdefault(chunk.id, []).append((type(chunk).__name__, chunk.content))
    # the first request asks for n=2 (not streamed: one whole message, and the server answers
    # with one choice); the second chain comes from a request for one, streamed word by word
    first, second = pieces.values()
    assert first == [("AIMessage", solution("8"))]
    assert len(second) > 5 and {kind for kind, _ in second} == {"AIMessageChunk"}
    assert "".join(text for _, text in second) == solution("8")


async def test_an_n_way_request_is_not_streamed_and_keeps_its_k_answers():
    model = scripted(["8", "5", "8", "6"])
    graph = graph_of(model, rounds=0)
    messages, final = [], {}
    async for mode, payload in graph.astream(INPUT, stream_mode=["messages", "values"]):
        if mode == "messages":
            messages.append(payload)
        else:
            final = payload
    assert final["votes"] == pytest.approx({"8": 3.6, "5": 0.5, "6": 0.5})
    assert model.requests[0]["n"] == 4 and model.requests[0]["stream"] is False
    assert [m["langgraph_node"] for _c, m in messages] == ["solve"]  # the one answer, whole


async def test_astream_events_has_the_model_calls():
    model = scripted(["8", "8", "8", "5"])
    kinds = [(e["event"], e["metadata"].get("langgraph_node")) async for e in
             graph_of(model).astream_events(INPUT, version="v2")]  # fmt: skip
    assert ("on_chat_model_start", "solve") in kinds and ("on_chat_model_end", "solve") in kinds


async def test_judge_calls_with_logprobs_are_not_streamed():
    from magicore.tools.llm import sample

    model = RoleScriptedModel({"other": lambda n, _m: "Yes"}, logprob=lambda _t: 0.9)

    async def node(state):
        completions, _ = await sample(model, [("system", "Judge."), ("user", "2+2=4?")], logprobs=True)
        return {"answer": completions[0].text, "votes": {"p": completions[0].logprobs[0]["logprob"]}}

    g = StateGraph(GraphOutput)
    g.add_node("judge", node)
    g.add_edge(START, "judge")
    g.add_edge("judge", END)
    out = [p async for p in g.compile().astream({}, stream_mode=["messages", "values"])]
    assert model.requests[-1]["stream"] is False
    assert out[-1][1]["votes"]["p"] == pytest.approx(-0.10536, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# the output schema


async def test_the_graph_returns_its_output_keys_and_no_working_state():
    final = await graph_of(scripted(["5", "6", "7", "9"])).ainvoke(INPUT)
    assert set(final) <= set(GraphOutput.__annotations__)
    assert {"answer", "votes", "rounds", "route", "usage", "pool", "reviews", "refinements"} <= set(final)
    assert not {"pending", "round", "family", "calibration", "question"} & set(final)


class ParentState(TypedDict, total=False):
    question: str
    answer: str | None
    # the parent's own keys that share a name with magicore's working state
    round: int  # the parent's conversation turn
    pending: Annotated[list[str], operator.add]  # the parent's to-do list
    family: str


async def test_a_parent_graph_keeps_its_own_keys_that_share_names_with_the_working_state():
    model = scripted(["5", "6", "7", "9"])  # hard: MAgICoRe itself goes through round 1
    g = StateGraph(ParentState)
    g.add_node("magicore", graph_of(model, rounds=1))
    g.add_edge(START, "magicore")
    g.add_edge("magicore", END)
    final = await g.compile().ainvoke({"question": QUESTION, "round": 7, "pending": ["call mum"], "family": "math"})
    assert final["answer"] == "8"
    assert final["round"] == 7 and final["pending"] == ["call mum"] and final["family"] == "math"


class RouterState(TypedDict, total=False):
    question: str
    route: str  # the parent's own routing decision: same name as magicore's output key
    answer: str | None
    decisions: list[dict]


async def test_a_parent_with_its_own_route_key_maps_the_output_in_a_node():
    magicore_graph = graph_of(scripted(["5", "6", "7", "9"]), rounds=1)

    async def ask_magicore(state: RouterState) -> dict:
        out = await magicore_graph.ainvoke({"question": state["question"], "calibration": CAL})
        return {"answer": out["answer"], "decisions": [d.model_dump() for d in out["route"]]}

    g = StateGraph(RouterState)
    g.add_node("router", lambda state: {"route": "math"})
    g.add_node("ask_magicore", ask_magicore)
    g.add_edge(START, "router")
    g.add_edge("router", "ask_magicore")
    g.add_edge("ask_magicore", END)
    final = await g.compile().ainvoke({"question": QUESTION})
    assert final["route"] == "math" and final["answer"] == "8"
    assert [d["hard"] for d in final["decisions"]] == [True, False]


# ---------------------------------------------------------------------------------------------
# synchronous use


def test_invoke_and_stream_work_without_an_event_loop():
    graph = graph_of(scripted(["5", "6", "7", "9"]), rounds=1)
    final = graph.invoke(INPUT)
    assert final["answer"] == "8" and final["rounds"] == 1
    events = [e["type"] for e in graph.stream(INPUT, stream_mode="custom")]
    assert events.count("review") == 4 and events[-1] == "final"


async def test_invoke_and_solve_work_where_an_event_loop_already_runs():
    # a notebook cell: a loop runs in this thread, and the caller uses the synchronous API
    graph = graph_of(scripted(["8", "8", "8", "5"]))
    assert graph.invoke(INPUT)["answer"] == "8"
    result = magicore.solve(QUESTION, model=scripted(["8", "8", "8", "5"]), reward=REWARD,
                            config=MethodConfig(k=4), calibration=CAL)  # fmt: skip
    assert result.answer == "8" and result.llm_calls == 4
    await asyncio.sleep(0)  # the loop is still usable


async def test_an_interrupt_in_a_notebook_cell_stops_solve_at_once():
    """A notebook: a loop runs in this thread and the kernel turns Ctrl-C into KeyboardInterrupt.
    `solve()` gives the interrupt back at once and the run stops: no model call after it."""
    import os
    import signal
    import threading
    import time

    calls: list[float] = []

    def slow(_n, _m):
        calls.append(time.monotonic())
        return solution("8") if len(calls) == 1 else "It has an error, revise."

    model = RoleScriptedModel({"solver": slow, "feedback": slow, "revise": lambda n, _m: solution("8")}, delay=0.4)
    graph = build_graph("self-refine", model=model, config=MethodConfig(self_refine_rounds=8))  # about 7 s in all
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            magicore.solve("What is 4 + 4?", graph=graph)
        interrupted = time.monotonic()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert interrupted - started < 3.0
    await asyncio.sleep(1.5)  # the cancelled run unwinds in its own thread
    assert not [c for c in calls if c > interrupted + 0.1]


async def test_a_cancel_scope_that_cancels_again_and_again_leaves_no_model_call_running():
    """anyio's cancel scopes (Starlette's streaming responses, structured-concurrency apps) cancel
    a task again on every turn of the loop until it ends; LangGraph stops unwinding a run at the
    second one, leaving the running node's model call going. `asolve` passes the cancellation on
    once and returns when the run has unwound: the call in flight is dropped, none starts later."""
    import anyio

    started: list[str] = []

    class Watched(RoleScriptedModel):
        async def _agenerate(self, messages, *args, **kwargs):
            started.append(messages[-1].content[:20])
            return await super()._agenerate(messages, *args, **kwargs)

    model = Watched({"solver": lambda n, _m: solution("8"), "feedback": lambda n, _m: "Revise it.",
                     "revise": lambda n, _m: solution("8")}, delay=0.3)  # fmt: skip
    graph = build_graph("self-refine", model=model, config=MethodConfig(self_refine_rounds=4))  # 9 calls

    async def cancel_during_the_feedback(scope: anyio.CancelScope) -> None:
        while len(started) < 2:  # the draft is written, the feedback is being asked for
            await asyncio.sleep(0.01)
        scope.cancel()

    with anyio.CancelScope() as scope:
        canceller = asyncio.ensure_future(cancel_during_the_feedback(scope))
        await magicore.asolve("What is 4 + 4?", graph=graph)
    await canceller
    assert scope.cancelled_caught
    answered = len(model.requests)  # the scripted model records a call when it answers
    await asyncio.sleep(0.6)
    assert len(started) == 2 and answered == len(model.requests) == 1, started


def test_a_synchronous_parent_graph_runs_the_subgraph():
    g = StateGraph(ParentState)
    g.add_node("magicore", graph_of(scripted(["8", "8", "8", "5"])))
    g.add_edge(START, "magicore")
    g.add_edge("magicore", END)
    assert g.compile().invoke({"question": QUESTION})["answer"] == "8"


# ---------------------------------------------------------------------------------------------
# checkpointers


@pytest.fixture
def serde_events():
    from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener

    seen: list[dict] = []
    unregister = register_serde_event_listener(seen.append)
    yield seen
    unregister()


def unregistered(events: list[dict]) -> set[str]:
    return {e["name"] for e in events if e.get("kind") == "msgpack_unregistered_allowed"
            and e.get("module", "").startswith("magicore.")}  # fmt: skip


async def test_a_saver_with_magicores_serializer_reads_the_state_back_without_warnings(serde_events):
    saver = InMemorySaver(serde=serializer())
    graph = graph_of(scripted(["5", "6", "7", "9"]), rounds=1, checkpointer=saver)
    thread = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(INPUT, thread)
    state = await graph.aget_state(thread)
    assert type(state.values["pool"][0]).__name__ == "Chain"
    assert unregistered(serde_events) == set()


@pytest.mark.parametrize("method", ["magicore", "sc", "bok", "self-refine"])
async def test_a_new_question_on_a_checkpointed_thread_starts_from_nothing(method):
    """One thread per user session, as LangGraph apps keep them: the second question's pool,
    reviews, route, usage and task family are its own, none of the first question's."""
    def answer_to(messages, n=0):  # the first question's four chains disagree
        return str(51 + n % 4) if "17" in str(messages[-1].content) else "4"

    model = RoleScriptedModel({"solver": lambda n, m: solution(answer_to(m, n)),
                               "reviewer": lambda n, _m: "Step 2 is wrong: recompute it.",
                               "refiner": lambda _n, m: solution(answer_to(m)),
                               "feedback": lambda n, _m: "The solution is correct."})  # fmt: skip
    reward = FakeAnswerReward({**{str(a): (0.3, 0.2) for a in range(51, 55)}, "4": (0.9, 0.9)})  # the first run is hard
    graph = build_graph(method, model=model, reward=reward if method in ("magicore", "bok") else None,
                        config=MethodConfig(k=4, rounds=1, calibration=CAL), checkpointer=InMemorySaver(serde=serializer()))  # fmt: skip
    thread = {"configurable": {"thread_id": "user-42"}}
    first = await graph.ainvoke({"question": "Compute $17 \\cdot 3$."}, thread)  # guessed: math
    second = await graph.ainvoke({"question": "What is 2 + 2?"}, thread)
    if method == "magicore":
        assert len(first["reviews"]) == 4 and len(first["refinements"]) == 4 and first["route"][0].hard
        assert second["reviews"] == [] and second["refinements"] == [] and len(second["route"]) == 1
    assert second["answer"] == "4" and [c.answer for c in second.get("pool", [])] in ([], ["4"] * 4)
    calls = 1 if method == "self-refine" else 4
    assert second["usage"]["solver"]["llm_calls"] == calls  # this run's, not both runs' sum
    assert set(second["usage"]) <= {"solver", "reward", "reviewer"}  # no refiner: this run refined nothing
    assert all(d.answer == "4" for d in second.get("drafts", []))
    values = (await graph.aget_state(thread)).values
    assert values["task_family"] == "word"  # guessed again for the new question (the first was math)
    assert values.get("family") is None  # the guess is working state, not written into the input


async def test_a_default_saver_warns_about_magicores_types(serde_events):
    # what the serializer above is for: LangGraph's default one reports every type it does not know
    graph = graph_of(scripted(["8", "8", "8", "5"]), checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(INPUT, thread)
    await graph.aget_state(thread)
    assert {"Chain", "RouteDecision"} <= unregistered(serde_events)


async def test_interrupt_before_route_pauses_at_every_easy_hard_decision():
    model = scripted(["5", "6", "7", "9"])
    graph = graph_of(model, rounds=2, checkpointer=InMemorySaver(serde=serializer()), interrupt_before=["route"])
    thread = {"configurable": {"thread_id": "t"}}
    pauses = []
    state = await graph.ainvoke(INPUT, thread)
    while (snapshot := await graph.aget_state(thread)).next:
        assert snapshot.next == ("route",)
        pauses.append(snapshot.values["round"])
        state = await graph.ainvoke(None, thread)
    # before the decision after sampling, and again after refinement round 1 (then easy: done)
    assert pauses == [0, 1] and state["answer"] == "8" and state["rounds"] == 1


# ---------------------------------------------------------------------------------------------
# the package


def test_the_package_exports_the_api_and_is_typed():
    import importlib.resources

    from magicore.agents.backends import chat_model
    from magicore.graphs.api import asolve, solve

    assert magicore.build_graph is build_graph and magicore.asolve is asolve and magicore.solve is solve
    assert magicore.chat_model is chat_model
    assert magicore.__version__ == __import__("importlib.metadata").metadata.version("magicore")
    assert importlib.resources.files("magicore").joinpath("py.typed").is_file()
    with pytest.raises(AttributeError):
        magicore.no_such_name  # noqa: B018


def test_import_magicore_stays_light():
    import subprocess
    import sys

    code = "import sys, magicore; print('langgraph' in sys.modules, 'langchain_core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
