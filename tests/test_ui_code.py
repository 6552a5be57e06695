"""The chat app on a code question, under Streamlit's AppTest with a scripted model: the
Reviewer's test results on the docstring's examples, a diff of the program per refinement, and
the answer shown as code. Programs run in the real sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from magicore.agents.fake import ScriptedFakeChatModel, role_of

APP = Path(__file__).resolve().parents[1] / "ui" / "app" / "main.py"
QUESTION = 'def add(a: int, b: int) -> int:\n    """Add two integers.\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    """\n'
RIGHT = "def add(a, b):\n    return a + b"
# Four of eight samples share one wrong behaviour and score lowest; the others pass one example each.
SAMPLES = ["def add(a, b):\n    return 100", "def add(a, b):\n    return a + b if a > 0 else 7",
           "def add(a, b):\n    return 100", "def add(a, b):\n    return 5",
           "def add(a, b):\n    return 100", "def add(a, b):\n    return 0",
           "def add(a, b):\n    return 100", "def add(a, b):\n    return a + b if a > 0 else 7"]  # fmt: skip


def code_model():
    """The factory MAGICORE_UI_MODEL_FACTORY names: wrong programs first, right once refined."""
    solver_calls = iter(range(10_000))

    def respond(messages, _index):
        role = role_of(str(messages[0].content))
        if role == "solver":
            program = SAMPLES[next(solver_calls) % len(SAMPLES)]
        elif role == "reviewer":
            return "Example 2 fails: the program ignores its arguments; return a + b."
        else:
            program = RIGHT
        return f"Step 1: Add the two numbers.\nStep 2: The function:\n```python\n{program}\n```"

    return ScriptedFakeChatModel(respond=respond, honours_n=False)


@pytest.fixture(autouse=True)
def ui_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGICORE_UI_DIR", str(tmp_path))
    monkeypatch.setenv("MAGICORE_UI_MODEL_FACTORY", f"{__name__}:code_model")
    monkeypatch.delenv("MAGICORE_UI_REWARD", raising=False)  # the default for code: execution
    for name in ("MAGICORE_MODEL", "MAGICORE_TRACE", "MAGICORE_TRACE_URL", "MAGICORE_UI_METHOD"):
        monkeypatch.delenv(name, raising=False)


def test_code_question_shows_test_results_program_diffs_and_the_program():
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception, at.exception
    assistant = at.chat_message[1]
    panel = assistant.status[0]
    assert ":red-badge[hard] → review and refine (round 1)" in "\n".join(m.value for m in panel.markdown)
    assert any(c.value == "Test results on the question's examples" for c in panel.caption)
    codes = [c.value for c in assistant.code]
    assert any("Example 2: add(-1, 1) returned 100; expected 0" in c for c in codes)
    assert any(c.value == "The revised program's results on the question's examples" for c in panel.caption)
    assert any(c.startswith("ran the program on the 2 examples of the question: 2 passed") for c in codes)
    diffs = [c for c in codes if c.startswith("--- previous draft")]
    assert diffs and all("+    return a + b" in d for d in diffs)
    assert any("-    return 100" in d for d in diffs)
    assert codes[-1] == RIGHT  # the answer, shown as a program
    assert not assistant.metric
    shown = "\n".join([m.value for m in assistant.markdown] + [c.value for c in assistant.caption])
    assert "reward `prm=judge*execution,orm=judge*execution`" in shown  # a capable model's default, for code


def self_refine_code_model():
    """Self-Refine on the code question: a wrong draft, feedback naming the failing example, a
    right revision, then approval."""
    feedback_calls = iter(range(10_000))

    def respond(messages, _index):
        role = role_of(str(messages[0].content))
        if role == "feedback":
            return ("Example 2 fails: the program ignores its arguments; return a + b."
                    if next(feedback_calls) == 0 else "The solution is correct.")  # fmt: skip
        program = SAMPLES[0] if role == "solver" else RIGHT
        return f"Step 1: Add the two numbers.\nStep 2: The function:\n```python\n{program}\n```"

    return ScriptedFakeChatModel(respond=respond, honours_n=False)


def test_self_refine_on_code_shows_each_programs_test_results(monkeypatch):
    monkeypatch.setenv("MAGICORE_UI_MODEL_FACTORY", f"{__name__}:self_refine_code_model")
    monkeypatch.setenv("MAGICORE_UI_METHOD", "self-refine")
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception, at.exception
    assistant = at.chat_message[1]
    captions = [c.value for c in assistant.status[0].caption]
    codes = [c.value for c in assistant.code]
    draft = captions.index("The draft program's results on the question's examples")
    revised = captions.index("The revised program's results on the question's examples")
    assert draft < revised
    assert any("Example 2: add(-1, 1) returned 100; expected 0" in c for c in codes)  # the draft's run
    assert any(c.startswith("ran the program on the 2 examples of the question: 2 passed") for c in codes)
    assert any(c.startswith("--- previous draft") and "+    return a + b" in c for c in codes)
    assert codes[-1] == RIGHT
