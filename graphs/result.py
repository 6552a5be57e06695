"""The result of solving one question with any method: answer, vote, cost, and what happened."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from magicore.agents.chain import Chain


class RunResult(BaseModel):
    """What a method returns for one question; `to_json` is the CLI's `--json` object."""

    question: str
    answer: str | None
    method: str
    votes: dict[str, float] = Field(default_factory=dict)
    llm_calls: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    chains: list[Chain] = Field(default_factory=list)
    rounds: int = 0
    route: list[dict[str, Any]] = Field(default_factory=list)
    usage_by_role: dict[str, dict[str, int]] = Field(default_factory=dict)
    reviews: list[dict[str, Any]] = Field(default_factory=list)
    refinements: list[Chain] = Field(default_factory=list)
    drafts: list[dict[str, Any]] = Field(default_factory=list)
    trace_id: str | None = None  # the OpenTelemetry trace of the run, when tracing is on
    #: per server the run called: its in-flight bound at the end, where it started, its ceiling,
    #: the most requests in flight at once and how often a 429/503 halved it (tools/inflight.py)
    inflight: list[dict[str, Any]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_json(self, *, include_chains: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "answer": self.answer,
            "method": self.method,
            "votes": {answer: round(weight, 6) for answer, weight in self.votes.items()},
            "llm_calls": self.llm_calls,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "seconds": round(self.seconds, 3),
            "rounds": self.rounds,
            "route": [
                {**{k: d[k] for k in ("round", "hard", "cond1", "orm_confidence", "prm_confidence", "majority")},
                 **({"forced": True} if d.get("forced") else {})}  # only MethodConfig(route="all") forces
                for d in self.route
            ],
            "usage_by_role": self.usage_by_role,
            "trace_id": self.trace_id,
            "inflight": self.inflight,
            **self.extra,
        }
        if include_chains:
            out["chains"] = [c.model_dump(exclude_none=True) for c in self.chains]
            out["reviews"] = self.reviews
            out["refinements"] = [c.model_dump(exclude_none=True) for c in self.refinements]
            if self.drafts:
                out["drafts"] = self.drafts
        return out
