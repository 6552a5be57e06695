"""The execution reward for code: run the candidate program on the question's visible examples.

Outcome score: the share of visible examples the program passes (0 when it has no program or
does not load; 0.5 when the question shows no examples). Step scores, by what the run shows:
the step holding the program scores 0.05 + 0.9 x that share (0.05 when it does not load); a
reasoning step that works through an example scores 0.95 when the program passes that example
and 0.05 when it fails it; any other step scores 0.9, as the verifier's steps with nothing to
check. Hidden tests are never run here: only the examples a question shows. One sandbox run per
(question, program), shared with the Reviewer's evidence and the vote (tools/code_runner.py).
A question that is not a code question gets neutral scores (0.9 per step, 0.5 outcome).
"""

from __future__ import annotations

from collections.abc import Sequence

from magicore.tools.code_runner import PROGRAM_RUNS, ProgramRun, ProgramRuns
from magicore.tools.programs import extract_program
from magicore.tools.rewards.base import RewardModel

VERIFIED = 0.95
FALSIFIED = 0.05
NEUTRAL = 0.9
NO_EXAMPLES_OUTCOME = 0.5


class ExecutionReward(RewardModel):
    """PRM and ORM for code from sandboxed runs on the visible examples."""

    name = "execution"

    def __init__(self, runs: ProgramRuns | None = None):
        self.runs = runs or PROGRAM_RUNS

    async def run(self, question: str, solution: str) -> ProgramRun | None:
        """The program's outcome on the question's examples; None for a question that is not code."""
        return await self.runs.get(question, extract_program(solution))

    async def ascore_outcome(self, question: str, solution: str) -> float:
        run = await self.run(question, solution)
        if run is None:
            return NO_EXAMPLES_OUTCOME
        return outcome_score(run)

    async def ascore_steps(self, question: str, steps: Sequence[str]) -> list[float]:
        run = await self.run(question, "\n".join(steps))
        if run is None:
            return [NEUTRAL] * len(steps)
        return step_scores(run, steps)


def outcome_score(run: ProgramRun) -> float:
    if run.load in ("no program", "error", "timeout"):
        return 0.0
    share = run.pass_share
    return NO_EXAMPLES_OUTCOME if share is None else share


def step_scores(run: ProgramRun, steps: Sequence[str]) -> list[float]:
    """One score per step (see the module docstring)."""
    # the step that holds the program run (`extract_program`'s choice), else the last with code
    holds = [i for i, s in enumerate(steps) if run.program and run.program in s]
    program_step = max(holds or [i for i, s in enumerate(steps) if "```" in s], default=None)
    scores = []
    for i, step in enumerate(steps):
        if i == program_step:
            share = run.pass_share if run.load == "ok" else (None if run.load == "no examples" else 0.0)
            scores.append(NEUTRAL if share is None else FALSIFIED + (VERIFIED - FALSIFIED) * share)
            continue
        traced = [c for c in run.visible if _mentions(step, c.call)]
        if any(c.status != "passed" for c in traced):
            scores.append(FALSIFIED)
        elif traced:
            scores.append(VERIFIED)
        else:
            scores.append(NEUTRAL)
    return scores


def _mentions(step: str, call: str) -> bool:
    """Whether a step works through this example: it names the call, or its arguments."""
    if call in step:
        return True
    args = call[call.find("(") + 1 : call.rfind(")")].strip()
    return len(args) >= 4 and args in step
