"""Who decides whether an exported solution is right: the dataset's own ground truth, never a model.

A judge takes the benchmark record (its `question`, `gold`, and whatever else the dataset keeps,
hidden tests for code, say) and one solution (a chain dict: `text`, `answer`) and says True or
False. Math and word problems compare the extracted answer with the gold answer; a task family
with other ground truth registers its own judge for its dataset names. Imports tools only.
"""

from __future__ import annotations

from collections.abc import Callable

from magicore.tools.answers import answers_match

Judge = Callable[[dict, dict], bool]


def gold_answer_judge(record: dict, solution: dict) -> bool:
    """Right when the solution's final answer matches the record's gold answer."""
    return bool(answers_match(solution.get("answer"), record.get("gold")))


_JUDGES: dict[str, Judge] = {}


def register_judge(dataset: str, judge: Judge) -> None:
    """Make `judge` decide correctness for the records of `dataset` (run.json's `dataset`)."""
    _JUDGES[dataset] = judge


def judge_for(dataset: str | None) -> Judge:
    """The judge of a dataset; the gold answer decides unless a dataset registered another."""
    return _JUDGES.get(dataset or "", gold_answer_judge)
