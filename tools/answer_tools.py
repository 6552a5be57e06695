"""The answer tools as LangChain tools, for agent apps that want to call them."""

from __future__ import annotations

from langchain_core.tools import tool

from magicore.tools.answers import answers_match, extract_answer


@tool("extract_answer")
def extract_answer_tool(text: str, choices: str | None = None) -> str:
    """Find the final answer stated in a solution: the last \\boxed{...}, "The answer is ...",
    "#### 42", or the last number. Pass `choices` (e.g. "ABCD") for multiple choice. Returns the
    answer, or "NONE" when the text states none."""
    answer = extract_answer(text, choices=choices)
    return "NONE" if answer is None else answer


@tool("answers_match")
def answers_match_tool(a: str, b: str) -> bool:
    """Whether two final answers are the same: numbers with commas, units, percent and dollar
    signs compare as numbers; LaTeX expressions are compared symbolically."""
    return answers_match(a, b)
