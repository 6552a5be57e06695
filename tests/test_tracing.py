"""OpenTelemetry spans of runs with scripted models: tree, kinds, attributes, events, links."""

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from typing_extensions import TypedDict

from magicore.agents.fake import ScriptedFakeChatModel
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.graphs.build import build_graph
from magicore.graphs.config import MethodConfig
from magicore.graphs.tracing import _resource, workflow_span
from magicore.tools import telemetry
from magicore.tools.llm import sample
from tests.fakes import FakeAnswerReward
from tests.test_graphs import HIGH, LOW, run, scripted


class Tree:
    def __init__(self, finished):
        self.spans = list(finished)
        self.by_id = {s.context.span_id: s for s in self.spans}

    def named(self, prefix):
        return [s for s in self.spans if s.name.startswith(prefix)]

    def parent(self, s):
        return self.by_id.get(s.parent.span_id) if s.parent else None

    def children(self, s, prefix=""):
        return [c for c in self.spans if c.parent and c.parent.span_id == s.context.span_id and c.name.startswith(prefix)]

    def ancestors(self, s):
        out = []
        while (s := self.parent(s)) is not None:
            out.append(s)
        return out


async def test_easy_run_span_tree(spans):
    result = await run(scripted(["8", "8", "8", "5"]), FakeAnswerReward({**LOW, **HIGH}))
    tree = Tree(spans.get_finished_spans())
    (root,) = tree.named("invoke_workflow")
    assert root.name == "invoke_workflow magicore" and root.parent is None and root.kind == SpanKind.INTERNAL
    assert f"{root.context.trace_id:032x}" == result.trace_id
    assert root.attributes["magicore.answer"] == "8" and root.attributes["magicore.rounds"] == 0
    assert root.attributes["magicore.route.hard"] == (False,)
    assert json.loads(root.attributes["magicore.votes"]) == pytest.approx({"8": 5.4, "5": 0.5})
    assert root.attributes["magicore.usage.llm_calls"] == result.llm_calls == 4
    assert "gen_ai.usage.input_tokens" not in root.attributes  # totals under magicore's own names
    (route,) = [e for e in root.events if e.name == "magicore.route"]
    assert route.attributes["magicore.route.hard"] is False and route.attributes["magicore.round"] == 0

    (solver,) = tree.children(root, "invoke_agent")
    assert solver.name == "invoke_agent solver" and solver.attributes["gen_ai.agent.name"] == "solver"
    assert solver.attributes["gen_ai.operation.name"] == "invoke_agent"
    (chat,) = tree.children(solver)
    assert chat.name == "chat scripted-fake" and chat.kind == SpanKind.CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "scripted-fake"
    assert chat.attributes["gen_ai.request.model"] == "scripted-fake"
    assert chat.attributes["gen_ai.request.choice.count"] == 4
    assert chat.attributes["gen_ai.request.temperature"] == 0.8 and chat.attributes["gen_ai.request.top_p"] == 0.95
    assert "gen_ai.request.max_tokens" not in chat.attributes  # not set: the server's default
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0 and chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",) * 4
    assert "gen_ai.input.messages" not in chat.attributes  # content is opt-in

    scoring = [s for s in tree.children(root, "execute_tool reward_model") if "magicore.reward.batch" not in s.attributes]
    assert len(scoring) == 4
    (batch,) = [s for s in tree.children(root, "execute_tool reward_model") if "magicore.reward.batch" in s.attributes]
    assert batch.attributes["magicore.reward.batch"] == 4  # one batched preparation for the round
    for s in scoring:
        assert s.attributes["gen_ai.tool.name"] == "reward_model" and s.attributes["magicore.reward"] == "fake-reward"
        assert [link.context.span_id for link in s.links] == [chat.context.span_id]
        evaluations = [e for e in s.events if e.name == "gen_ai.evaluation.result"]
        names = [e.attributes["gen_ai.evaluation.name"] for e in evaluations]
        assert names == ["magicore.step_score", "magicore.step_score", "magicore.outcome_score"]
    values = sorted(e.attributes["gen_ai.evaluation.score.value"] for s in scoring for e in s.events
                    if e.attributes["gen_ai.evaluation.name"] == "magicore.outcome_score")
    assert values == [0.2, 0.9, 0.9, 0.9]
    session = root.attributes["session.id"]
    assert all(s.attributes.get("session.id") == session for s in tree.spans)


async def test_hard_run_has_reviewer_and_refiner_spans_per_chain(spans):
    await run(scripted(["5", "6", "7", "9"]), FakeAnswerReward({**LOW, **HIGH}))
    tree = Tree(spans.get_finished_spans())
    (root,) = tree.named("invoke_workflow")
    reviewers, refiners = tree.named("invoke_agent reviewer"), tree.named("invoke_agent refiner")
    assert len(reviewers) == len(refiners) == 4
    assert sorted(s.attributes["magicore.chain.index"] for s in reviewers) == [0, 1, 2, 3]
    assert {s.attributes["magicore.round"] for s in refiners} == {1}
    for agent in reviewers + refiners:
        assert tree.parent(agent) is root
        (chat,) = tree.children(agent)
        assert chat.name.startswith("chat ") and "gen_ai.request.choice.count" not in chat.attributes
    refined_scoring = [s for s in tree.named("execute_tool reward_model") if s.attributes.get("magicore.round") == 1]
    refiner_chats = {tree.children(r)[0].context.span_id for r in refiners}
    assert {s.links[0].context.span_id for s in refined_scoring} == refiner_chats
    assert [e.attributes["magicore.route.hard"] for e in root.events if e.name == "magicore.route"] == [True, False]


async def test_parent_links_hold_across_subgraphs_and_concurrent_runs(spans):
    """A host app embeds the MAgICoRe graph as a node and runs two questions at once."""
    inner = build_graph("magicore", model=scripted(["5", "6", "7", "9"]), reward=FakeAnswerReward({**LOW, **HIGH}),
                        config=MethodConfig(k=4, rounds=1))

    class Host(TypedDict, total=False):
        question: str
        calibration: object
        answer: str

    host = StateGraph(Host)
    host.add_node("magicore", inner)
    host.add_edge(START, "magicore")
    host.add_edge("magicore", END)
    app = host.compile()
    tracer = trace.get_tracer("host-app")

    async def request(name):
        with tracer.start_as_current_span(name):
            from magicore.graphs.state import Calibration

            return await app.ainvoke({"question": name, "calibration": Calibration(mu=1.0, sigma=0.2)})

    answers = await asyncio.gather(request("host request A"), request("host request B"))
    assert [a["answer"] for a in answers] == ["8", "8"]
    tree = Tree(spans.get_finished_spans())
    roots = {s.name: s for s in tree.named("host request")}
    for agent in tree.named("invoke_agent") + tree.named("execute_tool") + tree.named("chat"):
        top = tree.ancestors(agent)[-1]
        assert top.name in roots and top.context.trace_id == agent.context.trace_id
    per_root = {name: [s for s in tree.named("invoke_agent") if tree.ancestors(s)[-1] is root]
                for name, root in roots.items()}
    assert all(len(agents) == 1 + 4 + 4 for agents in per_root.values())  # solver + 4 reviews + 4 refines
    for chat in tree.named("chat"):
        assert tree.parent(chat).name.startswith("invoke_agent")


async def test_workflow_span_for_direct_graph_use_and_content_opt_in(spans):
    config = MethodConfig(k=2, max_tokens=64, temperature=0.6, top_p=0.9)
    graph = build_graph("sc", model=scripted(["8"]), config=config)
    telemetry.set_capture_content(True)
    try:
        with workflow_span("sc", "What is 8?", session_id="conversation-7"):
            await graph.ainvoke({"question": "What is 8?"})
    finally:
        telemetry.set_capture_content(False)
    tree = Tree(spans.get_finished_spans())
    (chat,) = tree.named("chat")
    assert chat.attributes["gen_ai.provider.name"] == chat.attributes["gen_ai.request.model"] == "scripted-fake"
    assert chat.attributes["gen_ai.request.max_tokens"] == 64
    assert chat.attributes["gen_ai.request.temperature"] == 0.6 and chat.attributes["gen_ai.request.top_p"] == 0.9
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    messages = json.loads(chat.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in messages] == ["system", "user"]  # GenAI roles, not LangChain's human/ai
    assert messages[-1]["parts"] == [{"type": "text", "content": "What is 8?"}]
    outputs = json.loads(chat.attributes["gen_ai.output.messages"])
    assert [m["role"] for m in outputs] == ["assistant"] * 2 and "\\boxed{8}" in outputs[0]["parts"][0]["content"]
    assert all(s.attributes["gen_ai.conversation.id"] == "conversation-7" for s in tree.spans)


async def test_content_has_genai_roles_and_tool_call_parts(spans):
    """A tool-calling exchange (the Reviewer's sandbox calls): LangChain's message types become
    the GenAI roles, tool calls `tool_call` parts and tool results `tool_call_response` parts."""
    call = {"name": "run_python", "args": {"code": "print(6 * 7)"}, "id": "call_1", "type": "tool_call"}
    model = ScriptedFakeChatModel(responses=[AIMessage(content="", tool_calls=[{**call, "id": "call_2"}])])
    messages = [SystemMessage("Review the solution."), HumanMessage("Is 42 right?"),
                AIMessage("Let me run it.", tool_calls=[call]), ToolMessage("42\n", tool_call_id="call_1")]  # fmt: skip
    telemetry.set_capture_content(True)
    try:
        await sample(model, messages, temperature=0.0, max_tokens=32)
    finally:
        telemetry.set_capture_content(False)
    (chat,) = Tree(spans.get_finished_spans()).named("chat")
    assert chat.attributes["gen_ai.request.max_tokens"] == 32 and chat.attributes["gen_ai.request.temperature"] == 0.0
    assert "gen_ai.request.top_p" not in chat.attributes
    inputs = json.loads(chat.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in inputs] == ["system", "user", "assistant", "tool"]
    assert inputs[2]["parts"] == [
        {"type": "text", "content": "Let me run it."},
        {"type": "tool_call", "id": "call_1", "name": "run_python", "arguments": {"code": "print(6 * 7)"}},
    ]
    assert inputs[3]["parts"] == [{"type": "tool_call_response", "id": "call_1", "response": "42\n"}]
    (output,) = json.loads(chat.attributes["gen_ai.output.messages"])
    assert output["role"] == "assistant"
    assert output["parts"] == [{"type": "tool_call", "id": "call_2", "name": "run_python",
                                "arguments": {"code": "print(6 * 7)"}}]  # fmt: skip


def test_service_name_defers_to_the_standard_environment(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert _resource(None, None).attributes["service.name"] == "magicore"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,deployment.environment=ci")
    assert _resource(None, None).attributes["service.name"] == "from-attributes"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert _resource(None, None).attributes["service.name"] == "checkout"
    assert _resource(None, "proj").attributes["openinference.project.name"] == "proj"
    assert _resource("explicit", None).attributes["service.name"] == "explicit"  # an argument wins


def test_setup_tracing_keeps_otel_service_name(tmp_path):
    proc = run_python(f"""
        import os
        os.environ["OTEL_SERVICE_NAME"] = "checkout"
        from magicore.graphs.tracing import setup_tracing
        print(setup_tracing("jsonl:{tmp_path}/spans.jsonl").resource.attributes["service.name"])
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "checkout"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_tracing_off_records_nothing():
    proc = run_python("""
        import asyncio
        from opentelemetry import trace
        from magicore.agents.fake import ScriptedFakeChatModel
        from magicore.graphs.api import asolve
        from magicore.graphs.tracing import setup_tracing
        assert setup_tracing() is None
        r = asyncio.run(asolve("q", method="sc", model=ScriptedFakeChatModel(responses=["\\\\boxed{1}"])))
        print(r.trace_id, type(trace.get_tracer_provider()).__name__)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "ProxyTracerProvider"]


def test_host_provider_is_used_and_nothing_added():
    proc = run_python("""
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        host, exporter = TracerProvider(), InMemorySpanExporter()
        host.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(host)
        from magicore.graphs.tracing import setup_tracing
        assert setup_tracing("console") is host
        assert len(host._active_span_processor._span_processors) == 1
        from magicore.agents.fake import ScriptedFakeChatModel
        from magicore.graphs.api import asolve
        asyncio.run(asolve("q", method="sc", model=ScriptedFakeChatModel(responses=["\\\\boxed{1}"])))
        print(sorted({s.name.split()[0] for s in exporter.get_finished_spans()}))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['chat', 'invoke_agent', 'invoke_workflow']"


def test_a_host_provider_that_is_not_the_sdks_is_used_and_nothing_added(tmp_path):
    proc = run_python(f"""
        import asyncio, os
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        class HostProvider(trace.TracerProvider):  # an application's own provider class
            def __init__(self, inner):
                self.inner = inner
            def get_tracer(self, *args, **kwargs):
                return self.inner.get_tracer(*args, **kwargs)

        inner, exporter = TracerProvider(), InMemorySpanExporter()
        inner.add_span_processor(SimpleSpanProcessor(exporter))
        host = HostProvider(inner)
        trace.set_tracer_provider(host)
        from magicore.graphs.tracing import flush, setup_tracing
        assert setup_tracing("jsonl:{tmp_path}/ours.jsonl") is host and trace.get_tracer_provider() is host
        assert not os.path.exists("{tmp_path}/ours.jsonl")  # no exporter of ours
        from magicore.agents.fake import ScriptedFakeChatModel
        from magicore.graphs.api import asolve
        r = asyncio.run(asolve("q", method="sc", model=ScriptedFakeChatModel(responses=["\\\\boxed{{1}}"])))
        flush()  # the host's provider has no force_flush: nothing to do, no error
        print(r.trace_id is not None, sorted({{s.name.split()[0] for s in exporter.get_finished_spans()}}))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True ['chat', 'invoke_agent', 'invoke_workflow']"


def test_a_host_noop_provider_means_tracing_off(tmp_path):
    proc = run_python(f"""
        import asyncio, os
        from opentelemetry import trace
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        from magicore.graphs.tracing import setup_tracing
        assert setup_tracing("jsonl:{tmp_path}/ours.jsonl") is None
        assert not os.path.exists("{tmp_path}/ours.jsonl")
        from magicore.agents.fake import ScriptedFakeChatModel
        from magicore.graphs.api import asolve
        r = asyncio.run(asolve("q", method="sc", model=ScriptedFakeChatModel(responses=["\\\\boxed{{1}}"])))
        print(r.trace_id, type(trace.get_tracer_provider()).__name__)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "NoOpTracerProvider"]


def test_jsonl_export_reads_back_into_the_same_tree(tmp_path):
    path = tmp_path / "spans.jsonl"
    with MockServer(MockSettings(honour_n=True)) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "magicore.ui.cli", "solve", "What is 40 + 2?", "--model", server.base_url,
             "-k", "3", "--reward", "verifier", "--trace", f"jsonl:{path}", "--json"],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    trace_id = json.loads(proc.stdout)["trace_id"]
    lines = path.read_text().splitlines()
    spans = [json.loads(line) for line in lines]  # one span per line, each a whole to_json() object
    assert all(s["context"]["trace_id"] == "0x" + trace_id for s in spans)
    by_id = {s["context"]["span_id"]: s for s in spans}
    names = {s["name"] for s in spans}
    assert {"invoke_workflow magicore", "invoke_agent solver", "chat mock-model",
            "execute_tool reward_model", "execute_tool run_python"} <= names
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "invoke_workflow magicore"
    for s in spans:
        if s is not root:
            assert s["parent_id"] in by_id  # every parent link resolves inside the file
    chat = next(s for s in spans if s["name"] == "chat mock-model")
    assert by_id[chat["parent_id"]]["name"] == "invoke_agent solver"
    assert chat["kind"] == "SpanKind.CLIENT" and chat["attributes"]["gen_ai.request.choice.count"] == 3
    (sandbox,) = [s for s in spans if s["name"] == "execute_tool run_python"]  # one run for all chains
    prepare = by_id[sandbox["parent_id"]]
    assert prepare["name"] == "execute_tool reward_model" and prepare["attributes"]["magicore.reward.batch"] == 3
    assert sandbox["attributes"]["magicore.sandbox.exit_code"] == 0


async def test_each_scoring_span_names_its_chain_and_links_to_that_chains_model_call(spans):
    await run(scripted(["5", "6", "7", "9"]), FakeAnswerReward({**LOW, **HIGH}), rounds=1)
    tree = Tree(spans.get_finished_spans())
    scoring = [s for s in tree.named("execute_tool reward_model") if "magicore.reward.batch" not in s.attributes]
    by_round = {r: sorted((s for s in scoring if s.attributes["magicore.round"] == r),
                          key=lambda s: s.attributes["magicore.chain.index"]) for r in (0, 1)}  # fmt: skip
    assert [s.attributes["magicore.chain.index"] for s in by_round[0]] == [0, 1, 2, 3]
    assert [s.attributes["magicore.chain.index"] for s in by_round[1]] == [0, 1, 2, 3]
    (solver_chat,) = tree.children(tree.named("invoke_agent solver")[0], "chat")
    assert all([link.context.span_id for link in s.links] == [solver_chat.context.span_id] for s in by_round[0])
    # a refined chain's score links to the chat span of the refiner call that wrote it: the one
    # under the `invoke_agent refiner` span for the same chain
    for s in by_round[1]:
        assert s.attributes["magicore.chain.origin"] == "refiner"
        index = s.attributes["magicore.chain.parent"]
        (refiner,) = [r for r in tree.named("invoke_agent refiner") if r.attributes["magicore.chain.index"] == index]
        (chat,) = tree.children(refiner, "chat")
        assert [link.context.span_id for link in s.links] == [chat.context.span_id]


async def test_chat_spans_carry_the_servers_response_id_and_model(spans):
    from magicore.agents.backends import chat_model

    with MockServer(MockSettings(model="served-model")) as server:
        model = chat_model(f"served-model@{server.base_url}")
        await sample(model, [("user", "What is 40 + 2?")])
        await sample(model, [("user", "What is 40 + 2?")], n=2)
    chats = Tree(spans.get_finished_spans()).named("chat")
    assert len(chats) == 2
    ids = [c.attributes["gen_ai.response.id"] for c in chats]
    assert all(i.startswith("chatcmpl-") for i in ids) and len(set(ids)) == 2
    assert all(c.attributes["gen_ai.response.model"] == "served-model" for c in chats)


async def test_with_content_capture_the_workflow_span_has_phoenixs_input_and_output(spans):
    telemetry.set_capture_content(True)
    try:
        await run(scripted(["8", "8", "8", "5"]), FakeAnswerReward({**LOW, **HIGH}))
    finally:
        telemetry.set_capture_content(False)
    (root,) = Tree(spans.get_finished_spans()).named("invoke_workflow")
    assert root.attributes["input.value"] == "A question whose answer is 8." and root.attributes["output.value"] == "8"
    await run(scripted(["8", "8", "8", "5"]), FakeAnswerReward({**LOW, **HIGH}))
    roots = Tree(spans.get_finished_spans()).named("invoke_workflow")
    assert not {"input.value", "output.value"} & set(roots[-1].attributes)  # content is opt-in
