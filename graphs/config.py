"""Settings of a method run: every number of the algorithm is a parameter."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from magicore.graphs.state import Calibration


class MethodConfig(BaseModel):
    """Defaults follow the reference method, except k (40 in the paper; 8 here, for the
    embedded model)."""

    model_config = ConfigDict(frozen=True)

    k: int = Field(8, ge=1, le=256, description="chains the Solver samples")
    rounds: int = Field(3, ge=0, le=20, description="refinement rounds at most (T)")
    keep: int | None = Field(None, ge=1, description="pool size kept by reward (top-k); k if None")
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, description="per completion; the backend's default if None")
    seed: int | None = None
    z_threshold: float = Field(0.0, description="cond1 holds when the majority's mean z-score is at least this")
    confidence_threshold: float = Field(0.5, ge=0.0, le=1.0,
                                        description="cond2 holds when both vote confidences are at least this")
    refine: Literal["pool", "latest"] = Field(
        "pool", description="from round 1 on, review and refine the whole top-k pool (default) or only the "
                            "previous round's refinements (the reference code)")  # fmt: skip
    route: Literal["adaptive", "all"] = Field(
        "adaptive", description="round 0 refines the problems the easy/hard test calls hard (default), or every "
                                "problem whatever the test says (\"all\": the ablation without coarse-to-fine "
                                "routing); later rounds stop when the test says easy either way")  # fmt: skip
    review_threshold: int = Field(6, ge=0, le=10, description="steps scoring below n/10 get attention")
    self_refine_rounds: int = Field(4, ge=1, le=20, description="Self-Refine's feedback rounds at most")
    calibration: Calibration | None = Field(None, description="mu/sigma; the question's own chains if None")
