"""Tool evidence for the Reviewer: the execution verifier's re-computation of each step."""

from __future__ import annotations

from magicore.agents.chain import Chain
from magicore.tools.rewards.verifier import ExecutionVerifier


def verifier_evidence(verifier: ExecutionVerifier):
    """An async function (question, chain) -> lines such as "Step 2: 9 * 2 = 19: false, 9 * 2 is
    18", one per step that has something to check."""

    async def evidence(question: str, chain: Chain) -> list[str]:
        if not chain.steps:
            return []
        checks = await verifier.averify_steps(question, chain.steps)
        return [f"Step {c.index + 1}: {c.describe()}" for c in checks if c.claims]

    return evidence
