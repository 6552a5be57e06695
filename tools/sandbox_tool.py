"""The sandbox as a LangChain tool, for tool-calling agents (the Reviewer, or your own)."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from magicore.tools.sandbox import arun_python, run_python


class _CodeInput(BaseModel):
    code: str = Field(description="A complete Python 3 program; print the results you need.")


class PythonSandboxTool(BaseTool):
    """LangChain tool: runs the model's code in the sandbox and answers with status and output."""

    name: str = "run_python"
    description: str = ("Run a Python 3 program in an isolated sandbox (no network, no files kept, "
                        "time and memory limits) and return its exit status, stdout and stderr.")
    args_schema: type[BaseModel] = _CodeInput
    timeout: float = 5.0
    memory_mb: int = 512
    max_output_bytes: int = 16_000

    def _limits(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "memory_mb": self.memory_mb,
                "max_output_bytes": self.max_output_bytes}

    def _run(self, code: str, run_manager: Any = None) -> str:
        return run_python(code, **self._limits()).to_text()

    async def _arun(self, code: str, run_manager: Any = None) -> str:
        return (await arun_python(code, **self._limits())).to_text()
