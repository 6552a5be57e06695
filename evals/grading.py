"""Whether a benchmark answer is correct: equivalent to the gold answer, or for code, passing
the problem's hidden tests in the sandbox (evals/humaneval.py)."""

from __future__ import annotations

from magicore.evals.datasets import Problem
from magicore.tools.answers import answers_match


async def grade(problem: Problem, answer: str | None) -> tuple[bool, str | None]:
    """(correct, what the hidden tests showed: None for an answer compared with the gold one)."""
    if "test" in problem.meta and "entry_point" in problem.meta:
        from magicore.evals.humaneval import passes_hidden_tests

        return await passes_hidden_tests(problem, answer)
    return answers_match(answer, problem.answer), None


async def graded(problem: Problem, record: dict) -> dict:
    """A benchmark record (evals/bench_store.make_record) with `correct` decided by the hidden
    tests for a code problem, and what they showed in `tests`; other records unchanged."""
    if "test" not in problem.meta or record.get("error") or "tests" in record:  # not code, failed, or graded
        return record
    correct, tests = await grade(problem, record.get("answer"))
    return {**record, "correct": correct, "tests": tests}
