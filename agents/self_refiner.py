"""Self-Refine's agent: one model writes feedback on its own drafts and revises them.

Unlike MAgICoRe's Reviewer and Refiner, it sees no reward scores and no tool evidence, and it
keeps the whole history of drafts and feedback in its prompt (Madaan et al. 2023).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel

from magicore.agents.chain import Chain
from magicore.agents.prompts import choice_letters, render_messages
from magicore.agents.refiner import ANSWER_FORMAT, DEFAULT_FORMAT
from magicore.tools import telemetry
from magicore.tools.llm import Usage, sample

_CORRECT = re.compile(r"\b(the\s+)?solution\s+is\s+(entirely\s+|fully\s+)?correct\b", re.IGNORECASE)
_NEGATED = re.compile(r"\b(not|isn't|incorrect|error|wrong|mistake)\b", re.IGNORECASE)


def says_correct(feedback: str) -> bool:
    """Whether feedback declares the solution correct (the stop condition)."""
    text = feedback.strip()
    return bool(_CORRECT.search(text)) and not _NEGATED.search(text)


class SelfRefiner:
    name = "self-refine"

    def __init__(self, model: BaseChatModel, *, temperature: float = 0.8, top_p: float = 0.95,
                 max_tokens: int | None = None):  # fmt: skip
        self.model = model
        self.params = dict(temperature=temperature, top_p=top_p, max_tokens=max_tokens)

    async def afeedback(self, question: str, drafts: Sequence[dict]) -> tuple[str, bool, Usage]:
        """Feedback on the last draft (`drafts`: dicts with text and, for earlier ones, feedback)."""
        messages = render_messages("self_refine", "feedback", question=question, drafts=list(drafts),
                                   current=drafts[-1]["text"])  # fmt: skip
        with telemetry.agent_span("reviewer", self.model, **{"magicore.round": len(drafts) - 1, "magicore.style": "self-refine"}) as span:
            completions, usage = await sample(self.model, messages, **self.params)
            text = completions[0].text.strip()
            telemetry.set_attributes(span, {**telemetry.usage_attributes(usage), "magicore.done": says_correct(text)})
        return text, says_correct(text), usage

    async def arevise(self, question: str, drafts: Sequence[dict], *, family: str, round: int) -> tuple[Chain, Usage]:
        messages = render_messages("self_refine", "revise", question=question, drafts=list(drafts),
                                   answer_format=ANSWER_FORMAT.get(family, DEFAULT_FORMAT))  # fmt: skip
        with telemetry.agent_span("refiner", self.model, **{"magicore.round": round, "magicore.style": "self-refine"}) as span:
            completions, usage = await sample(self.model, messages, **self.params)
            telemetry.set_attributes(span, telemetry.usage_attributes(usage))
        choices = choice_letters(question) if family == "mcq" else None
        reply = completions[0]
        return Chain.from_text(reply.text, choices=choices, origin="refiner", round=round,
                               finish_reason=reply.finish_reason, trace_link=reply.metadata.get("span")), usage  # fmt: skip
