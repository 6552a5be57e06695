"""The Reviewer: targeted, step-wise feedback on one scored solution.

It sees the question, the solution with each step annotated "(Score: n/10)", and evidence from
tools (the execution verifier's re-computations), and explains the errors of low-scoring steps
without writing a new solution. With `tools`, a tool-calling model may also run code in the
sandbox itself before it answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage, convert_to_messages
from langchain_core.tools import BaseTool
from pydantic import BaseModel

from magicore.agents.chain import Chain
from magicore.agents.prompts import render_messages
from magicore.tools import telemetry
from magicore.tools.llm import sample
from magicore.tools.usage import Usage
from magicore.tools.steps import format_steps, score_out_of_10

#: Steps scoring below this (out of 10) are the ones the Reviewer must look at.
LOW_SCORE = 6


class Review(BaseModel):
    """Feedback on one chain."""

    chain_index: int
    round: int = 0
    feedback: str
    low_steps: list[int]  # 1-based numbers of steps scoring below the threshold
    evidence: list[str] = []
    tool_calls: int = 0
    solution: Chain | None = None  # the chain reviewed, with its scores (training-data export)


def scored_solution(chain: Chain) -> str:
    """The chain's steps, each annotated with its score out of 10."""
    steps = chain.steps or [chain.text.strip() or "(empty)"]
    return format_steps(steps, chain.step_scores)


class Reviewer:
    name = "reviewer"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        threshold: int = LOW_SCORE,
        temperature: float = 0.8,
        top_p: float = 0.95,
        max_tokens: int | None = None,
        tools: Sequence[BaseTool] = (),
        max_tool_calls: int = 2,
    ):
        self.model = model
        self.threshold = threshold
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.tools = {t.name: t for t in tools}
        self.max_tool_calls = max_tool_calls

    def messages(self, question: str, chain: Chain, evidence: Sequence[str], family: str):
        return render_messages("reviewer", family, question=question, solution=scored_solution(chain),
                               evidence=list(evidence), threshold=self.threshold)  # fmt: skip

    async def areview(
        self, question: str, chain: Chain, *, index: int = 0, evidence: Sequence[str] = (), family: str = "word"
    ) -> tuple[Review, Usage]:
        attributes = {"magicore.chain.index": index, "magicore.round": chain.round}
        with telemetry.agent_span("reviewer", self.model, **attributes) as span:
            review, usage = await self._review(question, chain, index, evidence, family)
            telemetry.set_attributes(span, {**telemetry.usage_attributes(usage),
                                            "magicore.review.low_steps": review.low_steps,
                                            "magicore.review.tool_calls": review.tool_calls})  # fmt: skip
        return review, usage

    async def _review(self, question, chain, index, evidence, family) -> tuple[Review, Usage]:
        messages = self.messages(question, chain, evidence, family)
        if self.tools:  # the tool loop appends LangChain messages; without tools the pairs are sent as they are
            messages = convert_to_messages(messages)
        usage, calls = Usage(), 0
        tools = [_tool_schema(t) for t in self.tools.values()]
        while True:
            # Once the budget is spent the model is still shown the tools (its history holds
            # tool calls) but told to answer in text: the Refiner must get written feedback.
            budget_left = self.max_tool_calls - calls
            extra = None if not tools else {"tools": tools} if budget_left > 0 else {"tools": tools, "tool_choice": "none"}
            completions, used = await sample(
                self.model, messages, temperature=self.temperature, top_p=self.top_p,
                max_tokens=self.max_tokens, extra=extra,
            )  # fmt: skip
            usage += used
            reply = completions[0]
            if not reply.tool_calls or budget_left <= 0:
                break
            messages.append(AIMessage(content=reply.text, tool_calls=reply.tool_calls))
            for call in reply.tool_calls:
                if calls >= self.max_tool_calls:
                    output = f"not run: the limit of {self.max_tool_calls} tool calls is reached; write your feedback now"
                else:
                    calls += 1
                    tool = self.tools.get(call["name"])
                    output = await tool.ainvoke(call["args"]) if tool else f"no tool named {call['name']}"
                messages.append(ToolMessage(content=str(output), tool_call_id=call["id"]))
        scores = chain.step_scores or []
        low = [i + 1 for i, s in enumerate(scores) if score_out_of_10(s) < self.threshold]
        review = Review(chain_index=index, feedback=reply.text.strip(), low_steps=low,
                        evidence=list(evidence), tool_calls=calls, solution=chain)  # fmt: skip
        return review, usage


def _tool_schema(tool: BaseTool) -> dict:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(tool)
