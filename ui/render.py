"""Plain-text rendering of a result for the terminal."""

from __future__ import annotations

from magicore.graphs.result import RunResult


def print_result(result: RunResult, *, show_samples: bool = False) -> None:
    print(f"Answer: {result.answer if result.answer is not None else '(none)'}")
    if result.votes:
        total = sum(result.votes.values()) or 1.0
        parts = [f"{answer}: {weight:g} ({weight / total:.0%})" for answer, weight in result.votes.items()]
        print(f"Votes:  {', '.join(parts)}")
    unparsed = sum(1 for c in result.chains if c.answer is None)
    if unparsed:
        print(f"        ({unparsed} of {len(result.chains)} chains had no parsable answer)")
    print(
        f"Cost:   {result.llm_calls} LLM calls, {result.input_tokens} input + "
        f"{result.output_tokens} output tokens, {result.seconds:.1f} s ({result.method})"
    )
    if show_samples:
        for i, chain in enumerate(result.chains, 1):
            print(f"\n--- chain {i}: answer {chain.answer!r} ---")
            print(chain.text.strip())
