"""examples/agent_app.py (MAgICoRe as a subgraph of a chat app) and langgraph.json, on scripted fakes."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from magicore.graphs.config import MethodConfig
from magicore.graphs.state import Calibration
from tests.fakes import FakeAnswerReward, RoleScriptedModel, solution

ROOT = Path(__file__).resolve().parent.parent


def load(relative: str):
    """Import a file by path, as `langgraph dev` and `python examples/...` do."""
    path = ROOT / relative
    name = "magicore_test_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def agent_app():
    return load("examples/agent_app.py")


def scripted(solver_answers, refine="8", honours_n=True):
    return RoleScriptedModel({
        "solver": lambda n, _m: solution(solver_answers[n % len(solver_answers)]),
        "reviewer": lambda n, _m: "Step 2 is wrong: recompute it.",
        "refiner": lambda n, _m: solution(refine),
        "other": lambda n, _m: "Hello! Nice to meet you.",
    }, honours_n=honours_n)


# R = ORM + product of step scores; with mu = 1, sigma = 0.2: "8" scores R = 1.8 (z = 4), the
# others R = 0.5 (z = -2.5)
REWARD = FakeAnswerReward({"8": (0.9, 0.9), **{a: (0.3, 0.2) for a in "5679"}})
CONFIG = MethodConfig(k=4, rounds=2, calibration=Calibration(mu=1.0, sigma=0.2))


async def test_math_goes_through_the_magicore_subgraph(agent_app):
    model = scripted(["8", "8", "8", "5"])
    app = agent_app.build_app(model, reward=REWARD, config=CONFIG)
    final = await app.ainvoke({"messages": [HumanMessage("What is 3 + 5?")]})
    # the app's own `route` survives the subgraph, whose `route` comes back as `decisions`
    assert final["route"] == "math" and final["question"] == "What is 3 + 5?"
    assert [d["hard"] for d in final["decisions"]] == [False]
    assert final["answer"] == "8" and final["rounds"] == 0
    assert final["votes"] == pytest.approx({"8": 3 * 1.8, "5": 0.5})
    # and the subgraph's other keys stay inside it
    assert not {"pool", "reviews", "usage", "pending"} & set(final)
    reply = final["messages"][-1]
    assert isinstance(reply, AIMessage) and reply.name == "magicore"
    assert reply.content == "The answer is 8 (settled by a reward-weighted vote)."
    assert len(model.calls("solver")) == 4 and model.calls("other") == []


async def test_a_hard_question_is_refined_inside_the_subgraph_and_streams_through(agent_app):
    model = scripted(["5", "6", "7", "9"], honours_n=False)  # four different low-reward answers: hard
    app = agent_app.build_app(model, reward=REWARD, config=CONFIG)
    events, text, final = [], {}, {}
    async for namespace, mode, chunk in app.astream({"messages": [HumanMessage("How many is 4 + 4?")]},
                                                   stream_mode=["custom", "messages", "values"],
                                                   subgraphs=True):  # fmt: skip
        if mode == "custom":
            events.append((namespace, chunk["type"]))
        elif mode == "messages":
            message, metadata = chunk
            text.setdefault((namespace[0].split(":")[0] if namespace else "", metadata["langgraph_node"]), []).append(
                message.content)
        elif not namespace:
            final = chunk
    assert final["answer"] == "8" and final["rounds"] == 1 and final["route"] == "math"
    assert final["messages"][-1].content == "The answer is 8 (after 1 round of review and refinement)."
    assert len(model.calls("reviewer")) == 4 and len(model.calls("refiner")) == 4
    # MAgICoRe's progress events arrive from inside the subgraph (a "magicore:<task id>" namespace)
    types = [t for _ns, t in events]
    assert types.count("route") == 2 and types.count("review") == 4 and types[-1] == "final"
    assert all(ns and ns[0].startswith("magicore:") for ns, _t in events)
    # and so does the models' text, as it is written: the Solver's streamed word by word
    assert {key for key in text if key[0] == "magicore"} == {("magicore", n) for n in ("solve", "review", "refine")}
    assert text[("", "respond")] == [final["messages"][-1].content]  # the app's own reply
    solver = text[("magicore", "solve")]
    assert len(solver) > 4 * 5 and "".join(solver).count("\\boxed{") == 4


async def test_small_talk_is_answered_directly(agent_app):
    model = scripted(["8"])
    app = agent_app.build_app(model, reward=REWARD, config=CONFIG)
    streamed = []
    final = await agent_app.run("Hello there!", app, show_progress=False,
                                on_text=lambda node, text: streamed.append((node, text)))  # fmt: skip
    assert final["route"] == "chat" and "answer" not in final
    assert final["messages"][-1].content == "Hello! Nice to meet you."
    assert streamed[0] == ("chat", "Hello! ") and "".join(t for _n, t in streamed) == "Hello! Nice to meet you."
    assert model.calls("solver") == [] and len(model.calls("other")) == 1
    assert model.calls("other")[0][0].content == agent_app.SMALL_TALK


def test_the_synchronous_api_runs_the_same_app(agent_app, capsys):
    model = scripted(["5", "6", "7", "9"])
    app = agent_app.build_app(model, reward=REWARD, config=CONFIG)
    final = agent_app.ask("How many is 4 + 4?", app)
    assert final["answer"] == "8" and final["rounds"] == 1 and final["route"] == "math"
    assert capsys.readouterr().err.count("magicore: review") == 4
    assert app.invoke({"messages": [HumanMessage("Hello!")]})["messages"][-1].content == "Hello! Nice to meet you."


async def test_a_conversation_keeps_its_messages_and_each_question_gets_a_fresh_subgraph(agent_app):
    from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener

    from magicore import serializer

    unregistered = []
    stop = register_serde_event_listener(
        lambda e: unregistered.append(e) if e.get("kind") == "msgpack_unregistered_allowed" else None)
    model = scripted(["8", "8", "8", "5"])
    app = agent_app.build_app(model, reward=REWARD, config=CONFIG, checkpointer=InMemorySaver(serde=serializer()))
    thread = {"configurable": {"thread_id": "chat-1"}}
    try:
        await app.ainvoke({"messages": [HumanMessage("Hi!")]}, thread)
        await app.ainvoke({"messages": [HumanMessage("What is 2 * 4?")]}, thread)
        final = app.invoke({"messages": [HumanMessage("And 10 - 2?")]}, thread)  # sync, same thread
    finally:
        stop()
    assert [m.type for m in final["messages"]] == ["human", "ai"] * 3
    assert final["question"] == "And 10 - 2?" and final["answer"] == "8" and final["rounds"] == 0
    assert len(model.calls("solver")) == 8  # k samples per math question, none for small talk
    # the second question's vote is its own, not added to the first one's
    assert final["votes"] == pytest.approx({"8": 1.8 * 3, "5": 0.5})
    assert unregistered == []  # the app's saver read magicore's state types back as registered


def test_router():
    from_module = load("examples/agent_app.py").looks_like_math
    for text in ("What is 17 * 3?", "How many apples are left?", "Solve x^2 = 4", "Compute the average"):
        assert from_module(text), text
    for text in ("Hello!", "Tell me about yourself.", "Thanks, bye"):
        assert not from_module(text), text


def test_cli_entry_point_runs_on_a_server(tmp_path):
    import subprocess

    from magicore.evals.mock_server import MockServer

    with MockServer() as server:  # every completion: "Step 1: 40 + 2 = 42 ... \boxed{42}"
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / "agent_app.py"), "What is 40 + 2?",
                               "--model", f"mock@{server.base_url}", "-k", "2"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[math] The answer is 42 (settled by a reward-weighted vote)."


# ---------------------------------------------------------------------------------------------
# langgraph.json: every graph it names loads and builds (what `langgraph dev` does first)


def test_langgraph_json_names_a_loadable_graph_per_method(monkeypatch):
    from magicore.graphs.build import METHODS

    config = json.loads((ROOT / "langgraph.json").read_text())
    assert set(METHODS) <= set(config["graphs"])
    assert "." in config["dependencies"]
    # a model spec with a name makes no network call when the model is built
    monkeypatch.setenv("MAGICORE_MODEL", "studio-test@http://127.0.0.1:9/v1")
    for graph_id, entry in config["graphs"].items():
        path, _, attr = (entry["path"] if isinstance(entry, dict) else entry).partition(":")
        assert path.startswith("./") and (ROOT / path).is_file(), path
        factory = getattr(load(path), attr)
        graph = asyncio.run(factory({"configurable": {"k": 3, "rounds": 1}}))
        nodes = set(graph.get_graph().nodes)
        assert "__start__" in nodes and "__end__" in nodes, graph_id
        if graph_id in METHODS:
            assert graph.name == f"magicore-{graph_id}"
            assert graph.get_graph().draw_mermaid() == (ROOT / "tests" / "snapshots" / f"{graph_id}.mmd").read_text()
        else:
            assert {"router", "magicore", "chat", "respond"} <= nodes


async def test_studio_factories_read_the_run_settings(monkeypatch):
    from magicore.evals.mock_server import MockServer
    from magicore.graphs import studio

    monkeypatch.delenv("MAGICORE_MODEL", raising=False)
    with MockServer() as server:
        spec = f"studio-test@{server.base_url}"
        graph = await studio.sc_graph({"configurable": {"model": spec, "k": 5, "temperature": 0.3}})
        assert graph.name == "magicore-sc"
        final = await graph.ainvoke({"question": "What is 40 + 2?"})
        assert final["answer"] == "42" and final["usage"]["solver"]["llm_calls"] == 5
        assert server.settings.requests[0]["temperature"] == 0.3
    model = studio.model_for(spec)
    assert model.metadata["magicore_spec"] == f"openai-compatible:{spec}"
    assert studio.model_for(spec) is model  # one model per spec for the server's lifetime
    # no spec: $MAGICORE_MODEL as it is at the time of the run, not as it was at the first run
    monkeypatch.setenv("MAGICORE_MODEL", spec)
    assert studio.model_for(None) is model
    monkeypatch.setenv("MAGICORE_MODEL", "other@http://127.0.0.1:9/v1")
    assert studio.model_for(None).metadata["magicore_spec"] == "openai-compatible:other@http://127.0.0.1:9/v1"
