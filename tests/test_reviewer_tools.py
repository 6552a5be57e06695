"""A tool-calling Reviewer runs code in the sandbox itself before it writes its feedback."""

from langchain_core.messages import AIMessage, ToolMessage

from magicore.agents.chain import Chain
from magicore.agents.fake import ScriptedFakeChatModel
from magicore.agents.reviewer import Reviewer
from magicore.tools.sandbox_tool import PythonSandboxTool

SOLUTION = "Step 1: 16 - 3 - 4 = 9 eggs.\nStep 2: 9 * 2 = 19 dollars.\nThe answer is \\boxed{19}."


async def test_reviewer_calls_the_sandbox_and_sees_the_result():
    call = {"name": "run_python", "args": {"code": "print(9 * 2)"}, "id": "call-1"}
    model = ScriptedFakeChatModel(responses=[
        AIMessage(content="", tool_calls=[call]),
        "Step 2 is wrong: 9 * 2 is 18, not 19. Redo the multiplication.",
    ])
    chain = Chain.from_text(SOLUTION, step_scores=[0.95, 0.05], orm=0.1)
    reviewer = Reviewer(model, tools=[PythonSandboxTool()])
    review, usage = await reviewer.areview("How much?", chain, index=3)
    assert review.feedback.startswith("Step 2 is wrong: 9 * 2 is 18")
    assert review.tool_calls == 1 and review.chain_index == 3 and review.low_steps == [2]
    assert usage.llm_calls == 2
    first, second = model.requests
    assert first["tools"][0]["function"]["name"] == "run_python"  # the tool was offered
    tool_reply = second["messages"][-1]
    assert isinstance(tool_reply, ToolMessage) and tool_reply.tool_call_id == "call-1"
    assert tool_reply.content == "status: exited with code 0\nstdout:\n18\n"


async def test_reviewer_stops_calling_tools_at_its_limit_and_still_writes_feedback():
    one = {"name": "run_python", "args": {"code": "print(1)"}, "id": "a"}
    two = [{"name": "run_python", "args": {"code": "print(2)"}, "id": "b"},
           {"name": "run_python", "args": {"code": "print(3)"}, "id": "c"}]  # fmt: skip
    model = ScriptedFakeChatModel(responses=[
        AIMessage(content="", tool_calls=[one]),
        AIMessage(content="", tool_calls=two),  # one more than the budget allows
        "Step 2 is wrong: 9 * 2 is 18.",
    ])
    chain = Chain.from_text(SOLUTION, step_scores=[0.9, 0.9], orm=0.9)
    review, usage = await Reviewer(model, tools=[PythonSandboxTool()], max_tool_calls=2).areview("q", chain)
    assert review.tool_calls == 2 and usage.llm_calls == 3
    assert review.feedback == "Step 2 is wrong: 9 * 2 is 18."
    first, second, last = model.requests
    assert "tool_choice" not in first and "tool_choice" not in second
    assert last["tool_choice"] == "none"  # the last call must answer in text
    results = {m.tool_call_id: m.content for m in last["messages"] if isinstance(m, ToolMessage)}
    assert results["b"] == "status: exited with code 0\nstdout:\n2\n"
    assert results["c"].startswith("not run: the limit of 2 tool calls")


async def test_low_steps_are_the_steps_shown_below_the_threshold():
    chain = Chain.from_text(SOLUTION, step_scores=[0.56, 0.54], orm=0.5)  # shown as 6/10 and 5/10
    model = ScriptedFakeChatModel(responses=["Step 2 needs a check."])
    review, _ = await Reviewer(model, threshold=6).areview("q", chain)
    shown = model.requests[0]["messages"][-1].content
    assert "(Score: 6/10)" in shown and "(Score: 5/10)" in shown
    assert review.low_steps == [2]
