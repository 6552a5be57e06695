"""Tool evidence for the Reviewer: the execution verifier's re-computation of each step, or for
code, the program's run on the question's visible examples (never hidden tests)."""

from __future__ import annotations

import logging

from magicore.agents.chain import Chain
from magicore.tools.code_runner import PROGRAM_RUNS, ProgramRuns
from magicore.tools.errors import MagicoreError
from magicore.tools.rewards.verifier import ExecutionVerifier

log = logging.getLogger("magicore.evidence")


class VerifierEvidence:
    """Evidence lines such as "Step 2: 9 * 2 = 19: false, 9 * 2 is 18", one per step that has
    something to check.

    `prepare` checks a whole pool in one sandbox run before the review fan-out, and the verifier
    remembers checks it has run (when the reward uses the same verifier, the score node has
    already checked these chains), so each review reads its evidence without a sandbox start.
    """

    def __init__(self, verifier: ExecutionVerifier, runs: ProgramRuns | None = None):
        self.verifier = verifier
        self.runs = runs or PROGRAM_RUNS

    async def prepare(self, question: str, chains: list[Chain], family: str | None = None) -> None:
        if family == "code":
            return  # each program runs once (remembered) when its evidence is asked for
        await self.verifier.aprepare(question, [c.steps for c in chains if c.steps])

    async def __call__(self, question: str, chain: Chain, family: str | None = None) -> list[str]:
        if family == "code":
            return await code_evidence(self.runs, question, chain)
        if not chain.steps:
            return []
        checks = await self.verifier.averify_steps(question, chain.steps)
        return [f"Step {c.index + 1}: {c.describe()}" for c in checks if c.claims]


async def code_evidence(runs: ProgramRuns, question: str, chain: Chain) -> list[str]:
    """The program's results on the question's visible examples: failing input, expected and
    actual output, exception and traceback, timeout. The score node has usually run it already."""
    run = await runs.get(question, chain.answer)
    return run.evidence() if run is not None else []


async def tests_to_show(runs: ProgramRuns, question: str, chain: Chain) -> list[str]:
    """`code_evidence` for a UI event: a sandbox that cannot run (not Linux, a refused setup)
    gives one line saying so instead of failing the node that only reports the run."""
    try:
        return await code_evidence(runs, question, chain)
    except MagicoreError as error:
        log.warning("could not run a program on the question's examples: %s", error)
        return [f"the program could not be run on the question's examples: {error}"]


def find_verifier(reward) -> ExecutionVerifier | None:
    """The ExecutionVerifier inside a reward model (itself, or a component of a combination)."""
    if isinstance(reward, ExecutionVerifier):
        return reward
    if getattr(reward, "inner", None) is not None:  # a wrapper, such as a score cache
        return find_verifier(reward.inner)
    for part in list(getattr(reward, "steps", [])) + list(getattr(reward, "outcome", [])):
        if isinstance(part, ExecutionVerifier):
            return part
    return None
