"""A scripted demo model: shows the whole MAgICoRe flow without any model server.

It answers a question about adding two numbers (the first two whole numbers in the question)
the way a weak model might: most samples get the sum wrong and disagree, so the question is
hard; the Reviewer points at the wrong step and the Refiner fixes it. Roles are told apart by
their system prompts (agents/prompts/*.yaml). `magicore ui --demo` uses it; the UI's browser
test serves the same replies from a real OpenAI-compatible mock server.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from magicore.agents.fake import role_of

# (offset from the true sum, with a second wrong step): three agree on sum+1, the rest scatter
_SAMPLES = [(1, True), (2, False), (1, True), (-1, False), (3, False), (1, True), (-2, False), (5, False)]


def _text(message: Any) -> str:
    return str(message.get("content", "") if isinstance(message, dict) else getattr(message, "content", ""))


def _role(message: Any) -> str:
    return str(message.get("role", "") if isinstance(message, dict) else getattr(message, "type", ""))


def numbers(question: str) -> tuple[int, int]:
    found = [int(n) for n in re.findall(r"\d+", question)[:2]]
    return (found + [3, 4])[:2] if len(found) < 2 else (found[0], found[1])


def solution(a: int, b: int, total: int, extra_error: bool = False) -> str:
    lines = [f"Step 1: We start with {a} and add {b}.", f"Step 2: {a} + {b} = {total}."]
    if extra_error:
        lines.append(f"Step 3: Check: {total} - {b} = {a}, so {total} stands.")
    lines.append(f"The answer is \\boxed{{{total}}}.")
    return "\n".join(lines)


class DemoResponder:
    """`reply(messages)` for chat messages (LangChain messages or OpenAI-style dicts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def reply(self, messages: Sequence[Any]) -> str:
        system = _text(messages[0]) if messages and _role(messages[0]) == "system" else ""
        user = next((_text(m) for m in reversed(messages) if _role(m) in ("user", "human")), "")
        role = role_of(system)
        with self._lock:
            n = self._counts.get(role, 0)
            self._counts[role] = n + 1
        question = user.split("### Current", 1)[0]
        a, b = numbers(question)
        if role == "solver":
            offset, extra = _SAMPLES[n % len(_SAMPLES)]
            return solution(a, b, a + b + offset, extra)
        if role == "revise":
            return solution(a, b, a + b)
        if role in ("reviewer", "feedback"):
            claimed = re.search(rf"{a} \+ {b} = (-?\d+)", user.split("### Current", 1)[-1])
            if claimed and int(claimed.group(1)) == a + b:
                return "All steps are correct." if role == "reviewer" else "The solution is correct."
            wrong = claimed.group(1) if claimed else "?"
            return (f"Step 2 is wrong: {a} + {b} is {a + b}, not {wrong}. Redo the sum; the final answer "
                    "and any check that uses it inherit the error.")  # fmt: skip
        if role == "refiner":
            return solution(a, b, a + b)
        return "Yes"


def demo_model():
    """The scripted demo chat model (for `magicore ui --demo` and MAGICORE_UI_MODEL_FACTORY)."""
    from magicore.agents.fake import ScriptedFakeChatModel

    responder = DemoResponder()
    return ScriptedFakeChatModel(respond=lambda messages, _i: responder.reply(messages), delay=0.05,
                                 model="scripted-demo")  # fmt: skip
