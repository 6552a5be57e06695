"""A reasoning chain: one sampled or refined solution, its parsed steps and answer, its scores.

Chains are plain pydantic models so that they travel through LangGraph state, checkpoints, JSON
output and traces unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from magicore.tools.answers import extract_answer
from magicore.tools.programs import extract_program
from magicore.tools.rewards.base import chain_reward
from magicore.tools.steps import MAX_SOLUTION_CHARS, MAX_STEP_CHARS, bound_steps, split_steps


class Chain(BaseModel):
    """One solution. `answer` is None when the text states no parsable final answer."""

    text: str
    steps: list[str] = Field(default_factory=list)
    answer: str | None = None
    origin: Literal["solver", "refiner"] = "solver"
    round: int = 0
    finish_reason: str | None = None
    step_scores: list[float] | None = None
    orm: float | None = None
    parent: int | None = Field(default=None, description="index of the chain this one refines")
    components: dict | None = Field(default=None, description="each reward backend's own scores")
    trace_link: str | None = Field(default=None, description="trace_id:span_id of the LLM call that wrote it")
    skipped: str | None = Field(default=None, description="what a runaway chain left out of scoring")

    @property
    def parsed(self) -> bool:
        return self.answer is not None

    @property
    def scored(self) -> bool:
        return self.step_scores is not None and self.orm is not None

    @property
    def reward(self) -> float:
        """R = ORM + prod(step scores); a chain with no parsable answer has step score 0."""
        if not self.scored:
            raise ValueError("the chain has not been scored yet")
        steps = self.step_scores if self.parsed else [0.0]
        return chain_reward(self.orm, steps)

    @classmethod
    def from_text(cls, text: str, *, choices: str | None = None, family: str | None = None, **fields) -> Chain:
        """Parse a completion into steps and a final answer.

        For the code family the answer is the program: the completion's last ```python block
        that defines a function, else its last one (None without one; `extract_program`).

        A completion cut off at the token limit (`finish_reason="length"`) states an answer only
        explicitly (`\\boxed{}`, "The answer is ..."): its last number belongs to an unfinished
        step, and voting with it would count a guess.
        """
        truncated = fields.get("finish_reason") == "length"
        # a runaway chain costs a bounded scoring; a program is cut only where the outcome reward
        # would cut it too (the execution reward runs the step that holds it)
        limit = MAX_SOLUTION_CHARS if family == "code" else MAX_STEP_CHARS
        steps, skipped = bound_steps(split_steps(text), max_chars=limit)
        if len(text) > MAX_SOLUTION_CHARS:
            whole = f"the outcome score read {MAX_SOLUTION_CHARS:,} of its {len(text):,} characters"
            skipped = f"{skipped}; {whole}" if skipped else whole
        if family == "code":
            return cls(text=text, steps=steps, answer=extract_program(text), skipped=skipped, **fields)
        return cls(
            text=text,
            steps=steps,
            answer=extract_answer(text, choices=choices, last_number=not truncated),
            skipped=skipped,
            **fields,
        )
