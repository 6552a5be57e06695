"""Splitting a solution's free text into reasoning steps.

The Solver asks for "Step 1: ...", "Step 2: ..." lines; models do not always comply, so numbered
lists ("1." / "1)") and, last, non-empty paragraphs or lines are accepted too. Imports nothing
from agents/graphs.
"""

from __future__ import annotations

import re

_STEP_LABEL = re.compile(r"(?im)^[ \t>*#_]*step[ \t]*(\d+)[ \t]*[:.)\-]?[*_]*[ \t]*[:.)\-]?[ \t]*")
_NUMBERED = re.compile(r"(?m)^[ \t]*(\d+)[.)][ \t]+")


def split_steps(text: str) -> list[str]:
    """The steps of a solution, each without its "Step n:" label, in order.

    Text before the first label (a restatement of the problem, say) is dropped when labels are
    present; text after the last label stays in the last step, so a closing
    "The answer is \\boxed{..}" belongs to the final step.
    """
    text = (text or "").strip()
    if not text:
        return []
    for pattern in (_STEP_LABEL, _NUMBERED):
        marks = list(pattern.finditer(text))
        if len(marks) >= 2 or (marks and pattern is _STEP_LABEL):
            steps = []
            for i, m in enumerate(marks):
                end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
                step = text[m.end() : end].strip()
                if step:
                    steps.append(step)
            if steps:
                return steps
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    if len(blocks) >= 2:
        return blocks
    return [line.strip() for line in text.splitlines() if line.strip()]


def score_out_of_10(score: float) -> int:
    """A step score in [0, 1] as the whole number out of 10 the Reviewer is shown."""
    return round(score * 10)


def format_steps(steps: list[str], scores: list[float] | None = None) -> str:
    """Steps as "Step n: ..." lines, each annotated "(Score: s/10)" when scores are given."""
    lines = []
    for i, step in enumerate(steps, 1):
        line = f"Step {i}: {step}"
        if scores is not None and i - 1 < len(scores):
            line += f" (Score: {score_out_of_10(scores[i - 1])}/10)"
        lines.append(line)
    return "\n".join(lines)
