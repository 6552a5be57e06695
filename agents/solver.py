"""The Solver: samples k zero-shot chains that reason in numbered steps and end in \\boxed{}.

Each completion is parsed into steps and a final answer; a chain with no parsable answer is
kept (its `answer` is None) so that it counts in the budget and scores 0 later.
"""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field

from magicore.agents.chain import Chain
from magicore.tools.llm import Completion, sample
from magicore.tools.usage import Usage
from magicore.agents.prompts import choice_letters, detect_family, render_messages
from magicore.agents.questions import check_question
from magicore.tools import telemetry


class SolverConfig(BaseModel):
    """Sampling settings (the reference method's defaults)."""

    model_config = ConfigDict(frozen=True)

    k: int = Field(8, ge=1, le=256, description="chains sampled per question")
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, description="per chain; the backend's default if None")
    seed: int | None = None


class SolverResult(BaseModel):
    chains: list[Chain]
    usage: Usage
    family: str

    model_config = ConfigDict(arbitrary_types_allowed=True)


class Solver:
    """Samples k solutions of a question from one chat model."""

    name = "solver"

    def __init__(self, model: BaseChatModel, config: SolverConfig | None = None):
        self.model = model
        self.config = config or SolverConfig()

    async def asolve(
        self,
        question: str,
        *,
        k: int | None = None,
        family: str | None = None,
        on_chain: Callable[[Chain], None] | None = None,
        seed: int | None = None,
    ) -> SolverResult:
        """Sample `k` chains (the configured k by default).

        Args:
            family: "word", "math" or "mcq"; guessed from the question when None.
            on_chain: called with each parsed chain as soon as it arrives.
            seed: the sampling seed (the configured one by default).
        """
        question = check_question(question)
        cfg = self.config
        k = cfg.k if k is None else k
        if k < 1:
            raise ValueError("k must be at least 1")
        family = family or detect_family(question)
        choices = choice_letters(question) if family == "mcq" else None
        messages = render_messages("solver", family, question=question)

        def parse(c: Completion) -> Chain:
            return Chain.from_text(c.text, choices=choices, family=family, finish_reason=c.finish_reason,
                                   trace_link=c.metadata.get("span"))  # fmt: skip

        parsed: dict[int, Chain] = {}  # id(completion) -> its chain: each is parsed once

        def arrived(c: Completion) -> None:
            if on_chain is not None:
                parsed[id(c)] = chain = parse(c)
                on_chain(chain)

        with telemetry.agent_span("solver", self.model, **{"magicore.k": k, "magicore.task_family": family}) as span:
            completions, usage = await sample(
                self.model, messages, n=k, temperature=cfg.temperature, top_p=cfg.top_p,
                max_tokens=cfg.max_tokens, seed=cfg.seed if seed is None else seed, on_completion=arrived,
            )  # fmt: skip
            chains = [parsed.get(id(c)) or parse(c) for c in completions]
            telemetry.set_attributes(span, {**telemetry.usage_attributes(usage),
                                            "magicore.answers": [str(c.answer) for c in chains]})  # fmt: skip
        return SolverResult(chains=chains, usage=usage, family=family)
