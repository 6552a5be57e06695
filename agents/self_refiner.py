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
from magicore.tools.llm import sample
from magicore.tools.usage import Usage

# Phrases that declare the whole solution right. Each is removed before looking for a flaw, so
# that "There is no error." counts as approval and "correct, but step 2 is wrong" does not.
_APPROVAL = re.compile(
    r"\b(?:the\s+|your\s+|this\s+)?(?:whole\s+|current\s+)?(?:solution|answer|reasoning|work)\s+(?:is|looks)\s+"
    r"(?:entirely\s+|fully\s+|completely\s+|perfectly\s+|all\s+)?(?:correct|right)\b"
    r"|\ball\s+(?:the\s+)?steps\s+(?:are|look)\s+(?:correct|right)\b"
    r"|\bthere\s+(?:is|are)\s+no\s+(?:errors?|mistakes?)\b"
    r"|\bno\s+(?:errors?|mistakes?)\s+(?:were\s+|was\s+)?found\b"
    r"|\bnothing\s+(?:is\s+)?wrong\b",
    re.IGNORECASE,
)
_FLAW = re.compile(r"\b(?:not|isn't|incorrect|error|errors|wrong|mistake|mistakes|should|instead|but|however)\b",
                   re.IGNORECASE)  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def says_correct(feedback: str) -> bool:
    """Whether feedback declares the solution correct (the stop condition).

    True when some sentence approves of the solution ("The solution is correct.", "All steps are
    correct.", "There is no error.") and no sentence, once its approving phrases are removed,
    still points at a flaw ("...is not correct", "Step 2 is wrong", "correct, but ...").
    """
    approved = False
    for sentence in _SENTENCE_END.split(feedback.strip()):
        rest = _APPROVAL.sub(" ", sentence)
        if rest != sentence:
            approved = True
        if _FLAW.search(rest):
            return False
    return approved


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
        return Chain.from_text(reply.text, choices=choices, family=family, origin="refiner", round=round,
                               finish_reason=reply.finish_reason, trace_link=reply.metadata.get("span")), usage  # fmt: skip
