"""The Refiner: one revised solution from the question, the scored solution and its feedback."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from magicore.agents.chain import Chain
from magicore.agents.prompts import choice_letters, render_messages
from magicore.agents.reviewer import Review, scored_solution
from magicore.tools import telemetry
from magicore.tools.llm import sample
from magicore.tools.usage import Usage

ANSWER_FORMAT = {
    "mcq": "the letter of the correct option in \\boxed{}, for example: The answer is \\boxed{B}.",
    "math": "the final answer in \\boxed{}, simplified, for example: The answer is \\boxed{\\frac{3}{4}}.",
    "code": "the complete corrected function, with its imports, in one ```python code block.",
}
DEFAULT_FORMAT = "the final answer in \\boxed{}, for example: The answer is \\boxed{42}."


class Refiner:
    name = "refiner"

    def __init__(self, model: BaseChatModel, *, temperature: float = 0.8, top_p: float = 0.95,
                 max_tokens: int | None = None):  # fmt: skip
        self.model = model
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens

    def messages(self, question: str, chain: Chain, feedback: str, family: str):
        return render_messages("refiner", family, question=question, solution=scored_solution(chain),
                               feedback=feedback, answer_format=ANSWER_FORMAT.get(family, DEFAULT_FORMAT))  # fmt: skip

    async def arefine(
        self, question: str, chain: Chain, review: Review, *, round: int, family: str = "word"
    ) -> tuple[Chain, Usage]:
        attributes = {"magicore.chain.index": review.chain_index, "magicore.round": round}
        with telemetry.agent_span("refiner", self.model, **attributes) as span:
            completions, usage = await sample(
                self.model, self.messages(question, chain, review.feedback, family),
                temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
            )  # fmt: skip
            reply = completions[0]
            choices = choice_letters(question) if family == "mcq" else None
            refined = Chain.from_text(reply.text, choices=choices, family=family, origin="refiner", round=round,
                                      parent=review.chain_index, finish_reason=reply.finish_reason,
                                      trace_link=reply.metadata.get("span"))  # fmt: skip
            telemetry.set_attributes(span, {**telemetry.usage_attributes(usage), "magicore.answer": str(refined.answer)})
        return refined, usage
