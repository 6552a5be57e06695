"""The roles' prompt templates: YAML files in `prompts/`, one per role, a section per task family.

Families: `word` (word problems), `math` (competition math), `mcq` (multiple choice), `code`
(a Python function to write from its signature and docstring; the answer is the program).
"""

from __future__ import annotations

import re
from typing import Literal

from magicore.tools.programs import looks_like_code_question
from magicore.tools.templates import render

TaskFamily = Literal["word", "math", "mcq", "code"]
TASK_FAMILIES: tuple[str, ...] = ("word", "math", "mcq", "code")

_MCQ_OPTIONS = re.compile(r"(?m)^\s*\(?([A-J])[).:]\s+\S")


def render_messages(role: str, family: str, **variables) -> list[tuple[str, str]]:
    """The (role, content) chat messages for `role` and task `family`, rendered."""
    return render("magicore.agents", role, family, **variables)


def detect_family(question: str) -> TaskFamily:
    """A best guess at the task family: a function definition with a docstring makes it code;
    options (A) (B) ... make it multiple choice; LaTeX makes it competition math; anything else
    is a word problem."""
    if looks_like_code_question(question):
        return "code"
    if len(set(_MCQ_OPTIONS.findall(question))) >= 2:
        return "mcq"
    if re.search(r"\\[a-zA-Z]+|\$[^$]+\$|\^", question):
        return "math"
    return "word"


def choice_letters(question: str) -> str:
    """The option letters of a multiple-choice question, e.g. "ABCD"."""
    return "".join(sorted(set(_MCQ_OPTIONS.findall(question)))) or "ABCD"
