"""Calibration of the chain reward: mu and sigma of R over a population of first chains.

The reference method computes them over the first chain of every problem in the dataset
(transductive); batch runs do the same (`from_first_chains`). A single question uses the file
`magicore calibrate` saved for its (model, reward) pair. Without one, the documented fallback is
the question's own chains (`self_calibration`): cond1 then asks whether the majority's chains
score above the average of this question's chains.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from magicore.graphs.routing import ScoredChain, reward
from magicore.graphs.state import Calibration


def from_rewards(rewards: Sequence[float], source: str) -> Calibration:
    """Population mean and standard deviation (as numpy.std, ddof=0, in the reference).

    `statistics` computes both exactly before rounding, so equal rewards give sigma 0 exactly;
    a float sum gives a sigma of 1e-17 instead, and every z-score becomes a rounding error.
    """
    if not rewards:
        raise ValueError("no rewards to calibrate on")
    values = [float(r) for r in rewards]
    return Calibration(mu=statistics.mean(values), sigma=statistics.pstdev(values), source=source, n=len(values))


def from_first_chains(first_chains: Sequence[ScoredChain], source: str = "batch") -> Calibration:
    """The reference's transductive calibration: R of the first chain of every problem."""
    return from_rewards([reward(c) for c in first_chains], source)


def self_calibration(pool: Sequence[ScoredChain]) -> Calibration:
    return from_rewards([reward(c) for c in pool], "self")


def calibration_dir() -> Path:
    base = os.environ.get("MAGICORE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "magicore"
    )
    return Path(base) / "calibration"


def calibration_path(model: str, reward_spec: str) -> Path:
    """Where the calibration of a (model, reward) pair lives."""
    key = f"{model}|{reward_spec}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")[:60]
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return calibration_dir() / f"{slug}-{digest}.json"


def save_calibration(cal: Calibration, model: str, reward_spec: str, **meta) -> Path:
    path = calibration_path(model, reward_spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**cal.model_dump(), "model": model, "reward": reward_spec, **meta}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path


def load_calibration(model: str, reward_spec: str) -> Calibration | None:
    """The saved calibration for (model, reward), or None when there is none."""
    path = calibration_path(model, reward_spec)
    try:
        data = json.loads(path.read_text())
        return Calibration(mu=data["mu"], sigma=data["sigma"], source=f"file:{path}", n=data.get("n"))
    except (OSError, ValueError, KeyError, TypeError):  # missing, unreadable or malformed: none
        return None


async def calibrate(
    questions: Sequence[str],
    *,
    model,
    reward,
    concurrency: int = 4,
    max_tokens: int | None = None,
    temperature: float = 0.8,
    top_p: float = 0.95,
) -> Calibration:
    """Sample one chain per question, score it, and return mu/sigma of R (as the reference
    does with the first chain of every problem)."""
    import asyncio

    from magicore.agents.solver import Solver, SolverConfig
    from magicore.graphs.build import resolve_reward
    from magicore.graphs.nodes import score_chain

    reward_model = resolve_reward(reward, model)
    solver = Solver(model, SolverConfig(k=1, temperature=temperature, top_p=top_p, max_tokens=max_tokens))
    limit = asyncio.Semaphore(concurrency)

    async def first_chain(question: str):
        async with limit:
            chain = (await solver.asolve(question)).chains[0]
            return await score_chain(reward_model, question, chain)

    chains = await asyncio.gather(*(first_chain(q) for q in questions))
    return from_first_chains(chains, source="calibrate")
