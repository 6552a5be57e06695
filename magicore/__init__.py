"""magicore: test-time reasoning with a Solver, a Reviewer and a Refiner as LangGraph graphs.

    from magicore import build_graph, asolve, solve, chat_model

    model = chat_model("embedded")                  # or "vllm:MODEL@http://host:8000/v1"
    graph = build_graph("magicore", model=model)    # a compiled LangGraph, alone or as a subgraph
    result = solve("What is 17 * 3?", model=model)  # a RunResult: answer, votes, route, cost

The names are imported on first use, so `import magicore` stays light. `magicore.testing`
holds the scripted fake model and reward for testing apps that embed magicore.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from magicore.agents.backends import chat_model
    from magicore.agents.coalesce import run_scope
    from magicore.graphs.api import asolve, solve
    from magicore.graphs.build import build_graph
    from magicore.graphs.checkpoint import serializer
    from magicore.graphs.config import MethodConfig
    from magicore.graphs.result import RunResult
    from magicore.graphs.state import GraphInput, GraphOutput

__all__ = ["GraphInput", "GraphOutput", "MethodConfig", "RunResult", "__version__", "asolve", "build_graph",
           "chat_model", "run_scope", "serializer", "solve"]  # fmt: skip

_EXPORTS = {
    "build_graph": "magicore.graphs.build",
    "asolve": "magicore.graphs.api",
    "solve": "magicore.graphs.api",
    "chat_model": "magicore.agents.backends",
    "MethodConfig": "magicore.graphs.config",
    "RunResult": "magicore.graphs.result",
    "GraphInput": "magicore.graphs.state",
    "GraphOutput": "magicore.graphs.state",
    "serializer": "magicore.graphs.checkpoint",
    "run_scope": "magicore.agents.coalesce",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("magicore")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _version()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'magicore' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
