"""Prompt templates, kept as YAML data files beside this module and rendered with Jinja.

Each file in `prompts/` holds one role's messages per task family (`word`, `math`, `mcq`).
Rendering uses `StrictUndefined`, so a template that names a missing variable is an error, not
a silent blank.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml
from jinja2 import Environment, StrictUndefined

TaskFamily = Literal["word", "math", "mcq"]
TASK_FAMILIES: tuple[str, ...] = ("word", "math", "mcq")

_env = Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
_MCQ_OPTIONS = re.compile(r"(?m)^\s*\(?([A-J])[).:]\s+\S")


@lru_cache(maxsize=None)
def load(role: str) -> dict:
    """The parsed YAML of `prompts/{role}.yaml`."""
    text = resources.files("magicore.agents").joinpath("prompts", f"{role}.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def render_messages(role: str, family: str, **variables) -> list[tuple[str, str]]:
    """The (role, content) chat messages for `role` and task `family`, rendered.

    The YAML holds a `messages` list per family; a family without its own entry uses `default`.
    """
    spec = load(role)
    entry = spec.get(family) or spec["default"]
    return [
        (m["role"], _env.from_string(m["content"]).render(**variables).strip())
        for m in entry["messages"]
    ]


def detect_family(question: str) -> TaskFamily:
    """A best guess at the task family: options (A) (B) ... make it multiple choice; LaTeX
    makes it competition math; anything else is a word problem."""
    if len(set(_MCQ_OPTIONS.findall(question))) >= 2:
        return "mcq"
    if re.search(r"\\[a-zA-Z]+|\$[^$]+\$|\^", question):
        return "math"
    return "word"


def choice_letters(question: str) -> str:
    """The option letters of a multiple-choice question, e.g. "ABCD"."""
    return "".join(sorted(set(_MCQ_OPTIONS.findall(question)))) or "ABCD"
