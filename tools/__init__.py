"""magicore.tools: what agents and graph nodes call.

Answer extraction and checking, step parsing, reward models (execution verifier, LLM judge,
vLLM PRM/ORM, combinations), the code sandbox, and the model-call helper. Each tool is also
available as a LangChain tool (`langchain_tools()`). Imports nothing from agents/graphs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "extract_answer": "magicore.tools.answers",
    "answers_match": "magicore.tools.answers",
    "normalize_answer": "magicore.tools.answers",
    "split_steps": "magicore.tools.steps",
    "run_python": "magicore.tools.sandbox",
    "arun_python": "magicore.tools.sandbox",
    "ExecutionResult": "magicore.tools.sandbox",
    "PythonSandboxTool": "magicore.tools.sandbox_tool",
    "sandbox_capabilities": "magicore.tools.sandbox",
    "RewardModel": "magicore.tools.rewards.base",
    "chain_reward": "magicore.tools.rewards.base",
    "ExecutionVerifier": "magicore.tools.rewards.verifier",
    "ExecutionReward": "magicore.tools.rewards.execution",
    "extract_program": "magicore.tools.programs",
    "LLMJudge": "magicore.tools.rewards.judge",
    "VLLMRewardModel": "magicore.tools.rewards.vllm",
    "CombinedReward": "magicore.tools.rewards.combine",
    "build_reward": "magicore.tools.rewards.spec",
    "extract_answer_tool": "magicore.tools.answer_tools",
    "answers_match_tool": "magicore.tools.answer_tools",
}

__all__ = [*_EXPORTS, "langchain_tools"]

if TYPE_CHECKING:  # pragma: no cover
    from magicore.tools.answers import answers_match, extract_answer, normalize_answer  # noqa: F401
    from magicore.tools.rewards.base import RewardModel, chain_reward  # noqa: F401
    from magicore.tools.sandbox import ExecutionResult, arun_python, run_python  # noqa: F401
    from magicore.tools.sandbox_tool import PythonSandboxTool  # noqa: F401


def __getattr__(name: str) -> Any:
    # Lazy: importing magicore.tools must not start sympy, langchain or the sandbox probe.
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'magicore.tools' has no attribute {name!r}")


def langchain_tools() -> list:
    """The sandbox and the answer tools as LangChain `BaseTool`s, ready for a tool-calling agent."""
    from magicore.tools.answer_tools import answers_match_tool, extract_answer_tool
    from magicore.tools.sandbox_tool import PythonSandboxTool

    return [PythonSandboxTool(), extract_answer_tool, answers_match_tool]
