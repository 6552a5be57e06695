"""Plain-text rendering of a result for the terminal."""

from __future__ import annotations

from magicore.graphs.result import RunResult


def route_summary(result: RunResult) -> str:
    if not result.route:
        return {"sc": "majority vote", "bok": "best reward", "self-refine": f"{result.rounds} revision(s)"}.get(
            result.method, "-"
        )
    first, last = result.route[0], result.route[-1]
    if not first["hard"]:
        return "easy: settled by the weighted vote"
    end = "easy" if not last["hard"] else "still hard"
    if first.get("forced"):
        return f"refined on request (the test said easy): {result.rounds} refinement round(s), then {end}"
    return f"hard: {result.rounds} refinement round(s), then {end}"


def _label(answer: str, programs: list[str]) -> str:
    """An answer as the vote shows it: a program (several lines) by its number."""
    return f"program {programs.index(answer) + 1}" if answer in programs else answer


def print_result(result: RunResult, *, show_samples: bool = False) -> None:
    programs = [a for a in result.votes if "\n" in a]
    if result.answer is not None and "\n" in result.answer:  # a program (code family)
        print(f"Answer ({_label(result.answer, programs) if programs else 'program'}):\n{result.answer}")
    else:
        print(f"Answer: {result.answer if result.answer is not None else '(none)'}")
    print(f"Method: {result.method} ({route_summary(result)})")
    if result.votes:
        total = sum(result.votes.values()) or 1.0
        parts = [f"{_label(answer, programs)}: {weight:.3g} ({weight / total:.0%})"
                 for answer, weight in result.votes.items()]  # fmt: skip
        print(f"Votes:  {', '.join(parts)}")
    unparsed = sum(1 for c in result.chains if c.answer is None)
    if unparsed:
        print(f"        ({unparsed} of {len(result.chains)} chains had no parsable answer)")
    limit = result.extra.get("max_tokens")
    print(
        f"Cost:   {result.llm_calls} LLM calls, {result.input_tokens} input + "
        f"{result.output_tokens} output tokens, {result.seconds:.1f} s"
        + (f" (at most {limit} tokens per completion)" if limit else "")
    )
    long = [c for c in result.chains if c.skipped]
    if long:
        worst = max(long, key=lambda c: len(c.text))
        print(f"Note:   {len(long)} of {len(result.chains)} chains too long to score whole; the longest "
              f"({len(worst.text):,} characters) {worst.skipped}")  # fmt: skip
    if show_samples:
        for i, chain in enumerate(result.chains, 1):
            print(f"\n--- chain {i}: answer {chain.answer!r} ---")
            print(chain.text.strip())


def explain(result: RunResult) -> None:
    """The route decisions, the final candidates with scores, and every review and refinement."""
    for d in result.route:
        verdict = "refined on request, the test said easy" if d.get("forced") else "hard" if d["hard"] else "easy"
        print(f"\nRound {d['round']}: {verdict} (cond1 {d['cond1']}, mean z "
              f"{d['mean_z'] if d['mean_z'] is None else round(d['mean_z'], 2)}, ORM confidence "
              f"{d['orm_confidence']:.2f}, PRM confidence {d['prm_confidence']:.2f}, majority {d['majority']!r}; "
              f"calibration: {d['calibration']})")  # fmt: skip
    if result.chains and result.chains[0].scored:
        print("\nCandidates (final pool):")
        for i, c in enumerate(result.chains, 1):
            steps = " ".join(f"{s:.2f}" for s in c.step_scores or [])
            print(f"  {i}. answer {c.answer!r:>8}  R {c.reward:.3f}  ORM {c.orm:.2f}  steps [{steps}]"
                  f"  ({c.origin}, round {c.round})")  # fmt: skip
    for r in result.reviews:
        low = ", ".join(map(str, r["low_steps"])) or "none"
        print(f"\nReview of chain {r['chain_index'] + 1} (round {r['round']}, low steps: {low}):")
        for line in r["evidence"]:
            print(f"  evidence: {line}")
        print("  " + r["feedback"].replace("\n", "\n  "))
    for c in result.refinements:
        print(f"\nRefinement of chain {(c.parent or 0) + 1} (round {c.round}, answer {c.answer!r}):")
        print("  " + c.text.strip().replace("\n", "\n  "))
    for i, d in enumerate(result.drafts):
        print(f"\nDraft {i} (answer {d['answer']!r}):\n  " + d["text"].strip().replace("\n", "\n  "))
        if d.get("feedback"):
            print("  feedback: " + d["feedback"].replace("\n", "\n  "))
