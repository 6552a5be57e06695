"""Splitting a solution's free text into reasoning steps.

The Solver asks for "Step 1: ...", "Step 2: ..." lines; models do not always comply, so numbered
lists ("1." / "1)") and, last, non-empty paragraphs or lines are accepted too. Imports nothing
from agents/graphs.
"""

from __future__ import annotations

import re

#: Steps of one chain that are scored at most, characters of one scored step, and characters of
#: a solution the outcome reward reads: a runaway completion (a 1 MB reply, a 4,000-line chain)
#: costs a bounded number of reward queries of bounded size, and says what was left out.
MAX_STEPS = 32
MAX_STEP_CHARS = 1_000
MAX_SOLUTION_CHARS = 16_000

_STEP_LABEL = re.compile(r"(?im)^[ \t>*#_]*step[ \t]*(\d+)[ \t]*[:.)\-]?[*_]*[ \t]*[:.)\-]?[ \t]*")
_NUMBERED = re.compile(r"(?m)^[ \t]*(\d+)[.)][ \t]+")
#: A fenced code block: ``` at the start of a line, to the next ``` (an unclosed one runs to the end).
#: A ``` inside a sentence ("write ``` around code") opens nothing.
_FENCED = re.compile(r"(?m)^[ \t>]*```.*?(?:```|\Z)", re.DOTALL)
_FENCE_LINE = re.compile(r"(?m)^[ \t>]*```")


def split_steps(text: str) -> list[str]:
    """The steps of a solution, each without its "Step n:" label, in order.

    Text before the first label (a restatement of the problem, say) is dropped when labels are
    present; text after the last label stays in the last step, so a closing
    "The answer is \\boxed{..}" belongs to the final step.
    """
    text = (text or "").strip()
    if not text:
        return []
    fences = [(m.start(), m.end()) for m in _FENCED.finditer(text)]
    for pattern in (_STEP_LABEL, _NUMBERED):
        # a "# Step 2:" comment or a "1." line inside a code block is code, not a new step
        marks = [m for m in pattern.finditer(text) if not any(a < m.start() < b for a, b in fences)]
        if len(marks) >= 2 or (marks and pattern is _STEP_LABEL):
            steps = []
            for i, m in enumerate(marks):
                end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
                step = text[m.end() : end].strip()
                if step:
                    steps.append(step)
            if steps:
                return steps
    blocks = _whole_fences(re.split(r"\n\s*\n", text), "\n\n")
    if len(blocks) >= 2:
        return blocks
    return _whole_fences(text.splitlines(), "\n")


def _whole_fences(parts: list[str], joiner: str) -> list[str]:
    """The non-empty `parts`, stripped, with every code block kept whole and as written: a part
    that opens a fence (``` at the start of a line) runs on to the part that closes it."""
    out: list[str] = []
    current: str | None = None
    for part in parts:
        current = part if current is None else current + joiner + part
        if len(_FENCE_LINE.findall(current)) % 2 == 0:
            if current.strip():
                out.append(current.strip())
            current = None
    if current is not None and current.strip():
        out.append(current.strip())
    return out


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


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` characters: its head and its tail (which states the answer)."""
    if len(text) <= limit:
        return text
    marker = f" [... {len(text) - limit:,} characters skipped ...] "
    head = (limit - len(marker)) * 2 // 3
    tail = limit - len(marker) - head
    return text[:head] + marker + text[len(text) - tail :]


def bound_steps(
    steps: list[str], max_steps: int = MAX_STEPS, max_chars: int = MAX_STEP_CHARS
) -> tuple[list[str], str | None]:
    """The steps to score and a sentence saying what was left out (None when nothing was).

    A chain with more than `max_steps` steps keeps its first `max_steps - 1` and its last (the
    one stating the answer); a step longer than `max_chars` keeps its head and tail.
    """
    notes = []
    if len(steps) > max_steps:
        notes.append(f"scored {max_steps} of its {len(steps):,} steps (the first {max_steps - 1} and the last)")
        steps = steps[: max_steps - 1] + steps[-1:]
    long = sum(len(step) > max_chars for step in steps)
    if long:
        notes.append(f"cut {long} step{'s' if long != 1 else ''} to {max_chars:,} characters")
        steps = [_cut(step, max_chars) for step in steps]
    return steps, "; ".join(notes) or None


def bound_solution(text: str, max_chars: int = MAX_SOLUTION_CHARS) -> str:
    """A solution as the outcome reward reads it: at most `max_chars` characters, head and tail."""
    return _cut(text, max_chars)
