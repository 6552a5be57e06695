"""Prompt templates kept as YAML data files, rendered with Jinja `StrictUndefined`.

A template file holds a `messages` list per task family (`default` when a family has none of its
own). A template that names a missing variable is an error, not a silent blank.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml
from jinja2 import Environment, StrictUndefined, Template

_env = Environment(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=None)
def load(package: str, name: str) -> dict:
    """The parsed YAML of `prompts/{name}.yaml` inside `package`."""
    text = resources.files(package).joinpath("prompts", f"{name}.yaml").read_text("utf-8")
    return yaml.safe_load(text)


@lru_cache(maxsize=None)
def _compiled(package: str, name: str, family: str) -> tuple[tuple[str, Template], ...]:
    spec = load(package, name)
    entry = spec.get(family) or spec["default"]
    return tuple((m["role"], _env.from_string(m["content"])) for m in entry["messages"])


def render(package: str, name: str, family: str = "default", **variables) -> list[tuple[str, str]]:
    """The (role, content) chat messages of template `name` for `family`, rendered (templates
    are compiled once)."""
    return [(role, template.render(**variables).strip()) for role, template in _compiled(package, name, family)]
