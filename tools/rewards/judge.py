"""LLM-as-judge reward model: the probability a chat model gives to "Yes, correct".

For each step, the judge sees the question, the earlier steps and the step, and answers Yes or
No; the step's score is P(Yes) / (P(Yes) + P(No)) read from the first generated token's
`top_logprobs` (math-shepherd style). The outcome score asks the same of the whole solution.

Batching: the k step queries of a chain (and of every chain in `ascore_steps_batch`) are sent
at once as separate one-token requests through `magicore.tools.llm.sample`, which bounds the
requests in flight per server. All queries of a chain share the system prompt and the question,
which servers with prefix caching (vLLM `--enable-prefix-caching`, llama.cpp's slot cache)
compute once; the steps follow in a layout that differs per query (earlier steps, then the step
to check), so they are not shared. A query costs its prompt tokens plus one output token.

The judge needs a backend that returns logprobs (vLLM, OpenAI, the embedded llama.cpp server).
A small judge is no better than chance at this (SmolLM2-135M: AUC 0.44 on single arithmetic
steps; Qwen2.5-Coder-1.5B: 0.60); use a capable model, and let the execution verifier carry the
step signal otherwise.

The prompts (`prompts/judge.yaml`) come in two kinds: for math and word problems, and for code
questions: the task family the graph was built for (`--task code`, a HumanEval benchmark), else
told from each question as the Solver tells it (a function signature with a docstring), so a
program is judged as a program, not as arithmetic.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel

from magicore.tools.errors import ModelError
from magicore.tools.llm import Completion, model_label, sample
from magicore.tools.programs import looks_like_code_question
from magicore.tools.rewards.base import RewardModel
from magicore.tools.templates import render

YES = frozenset({"yes", "correct", "true", "right"})
NO = frozenset({"no", "incorrect", "false", "wrong"})


def p_yes(completion: Completion, *, neutral: float = 0.5) -> float:
    """P(Yes) / (P(Yes) + P(No)) from the first token's top logprobs.

    Tokens are compared case-insensitively without surrounding spaces or punctuation, and
    variants ("Yes", " yes", "YES") add up. When neither appears among the top tokens, the
    generated text decides (1 or 0), and `neutral` is returned if it says neither.
    """
    first = (completion.logprobs or [None])[0]
    yes = no = 0.0
    if first:
        candidates = first.get("top_logprobs") or [first]
        for cand in candidates:
            word = str(cand.get("token", "")).strip().strip(".,:!").lower()
            prob = math.exp(float(cand.get("logprob", -math.inf)))
            if word in YES:
                yes += prob
            elif word in NO:
                no += prob
    if yes + no > 0:
        return yes / (yes + no)
    word = (completion.text.strip().split() or [""])[0].strip(".,:!").lower()
    return 1.0 if word in YES else 0.0 if word in NO else neutral


class LLMJudge(RewardModel):
    """Step and outcome scores from a chat model's Yes/No logprobs.

    Args:
        model: any LangChain chat model whose server returns logprobs.
        top_logprobs: how many alternatives to ask for (Yes and No must be among them).
        neutral: the score when the judge says neither Yes nor No.
        family: the task family of the questions it will see, when known ("code" asks about
            programs, any other about math); None tells each question's family from its text.
    """

    def __init__(self, model: BaseChatModel, *, top_logprobs: int = 10, neutral: float = 0.5,
                 family: str | None = None):  # fmt: skip
        self.model = model
        self.family = family
        self.top_logprobs = top_logprobs
        self.neutral = neutral
        self.name = f"judge({model_label(model)})"

    async def _ask(self, messages: list[tuple[str, str]]) -> float:
        completions, _ = await sample(
            self.model, messages, n=1, temperature=0.0, max_tokens=1,
            logprobs=True, top_logprobs=self.top_logprobs,
        )  # fmt: skip
        completion = completions[0]
        if not completion.logprobs and not completion.text.strip():
            raise ModelError(f"the judge model {model_label(self.model)} returned neither text nor logprobs")
        return p_yes(completion, neutral=self.neutral)

    def step_messages(self, question: str, steps: Sequence[str], index: int) -> list[tuple[str, str]]:
        return render("magicore.tools", "judge", self._kind(question, "step"), question=question,
                      previous=list(steps[:index]), step=steps[index], index=index + 1)  # fmt: skip

    def outcome_messages(self, question: str, solution: str) -> list[tuple[str, str]]:
        return render("magicore.tools", "judge", self._kind(question, "outcome"), question=question, solution=solution)

    async def ascore_step(self, question: str, steps: Sequence[str], index: int) -> float:
        """The score of step `index`, with the steps before it as context."""
        return await self._ask(self.step_messages(question, steps, index))

    async def ascore_steps(self, question: str, steps: Sequence[str]) -> list[float]:
        return list(await asyncio.gather(*(self.ascore_step(question, steps, i) for i in range(len(steps)))))

    async def ascore_steps_batch(self, question: str, chains: Sequence[Sequence[str]]) -> list[list[float]]:
        """Step scores of many chains, all queries in flight together."""
        return list(await asyncio.gather(*(self.ascore_steps(question, steps) for steps in chains)))

    async def ascore_outcome(self, question: str, solution: str) -> float:
        return await self._ask(self.outcome_messages(question, solution))

    def _kind(self, question: str, part: str) -> str:
        """The judge.yaml section for `part` ("step" or "outcome") of this question."""
        code = self.family == "code" if self.family else looks_like_code_question(question)
        return f"code_{part}" if code else part
