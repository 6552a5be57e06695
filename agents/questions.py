"""Checks on a question before any model sees it."""

from __future__ import annotations

from magicore.tools.errors import InputError

#: About 5,000 tokens: room for the answer inside the embedded model's 8,192-token context.
MAX_QUESTION_CHARS = 20_000


def check_question(question: str | None, *, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """The question stripped of surrounding white space, or an InputError saying what is wrong."""
    if question is not None and not isinstance(question, str):
        kind = type(question).__name__
        hint = "; decode it first" if isinstance(question, (bytes, bytearray)) else ""
        raise InputError(f"the question must be text (str), not {kind}{hint}")
    if question is None or not question.strip():
        raise InputError("the question is empty")
    question = question.strip()
    if "\x00" in question:
        raise InputError("the question contains a NUL character")
    if len(question) > max_chars:
        raise InputError(
            f"the question is {len(question):,} characters long; the limit is {max_chars:,} "
            "(about what fits in the model's context with room for an answer)"
        )
    return question
