"""What refinement did to the programs of the HumanEval ablation (magicore-all@4).

The records keep each program's verdict on the docstring's examples, not on the hidden tests
(those decide only the final answer). This script runs the hidden tests, in magicore's sandbox,
on every program of the run: the 4 sampled chains each problem's pool held and every
refinement, and prints how many pass before and after refinement. It reads the committed
records only and changes nothing. Usage, from the repository root:

    .venv/bin/python docs/results/humaneval-refinements.py [RUN_DIR]
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from magicore.evals.bench_store import load_results
from magicore.evals.datasets import load_problems
from magicore.evals.humaneval import passes_hidden_tests

RUN = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "humaneval-qwen2.5-coder-1.5b")
K = 4


async def passes(problem, program: str | None) -> bool:
    return (await passes_hidden_tests(problem, program))[0]  # no program: (False, "no program")


async def main() -> None:
    problems = {p.id: p for p in load_problems("humaneval")}
    ablation, magicore, sampled = (load_results(RUN, c) for c in ("magicore-all@4", "magicore@4", "sc@4"))
    sampled_passing = sampled_count = refined_passing = refined_count = more = fewer = 0
    missed = []
    for pid, record in ablation.items():
        problem = problems[pid]
        original = [await passes(problem, c.get("answer")) for c in sampled[pid]["chains"][:K]]
        refined = [await passes(problem, r.get("answer")) for r in record["refinements"] if r.get("round", 1) == 1]
        sampled_passing, sampled_count = sampled_passing + sum(original), sampled_count + len(original)
        refined_passing, refined_count = refined_passing + sum(refined), refined_count + len(refined)
        more += sum(refined) > sum(original)
        fewer += sum(refined) < sum(original)
        if not magicore[pid]["correct"]:
            missed.append((pid, sum(original), sum(refined), record["correct"]))
    print(f"problems: {len(ablation)}")
    print(f"sampled programs passing the hidden tests: {sampled_passing} of {sampled_count}")
    print(f"round-1 refinements passing the hidden tests: {refined_passing} of {refined_count}")
    print(f"problems with more passing programs after refinement: {more}; with fewer: {fewer}")
    print("problems magicore@4 got wrong (id, sampled programs passing, refinements passing, magicore-all@4 right):")
    for row in missed:
        print("  ", *row)
    reviews = [r for record in ablation.values() for r in record["reviews"]]
    failing = [r for r in reviews if any(_fails_an_example(e) for e in r.get("evidence") or [])]
    approving = [r for r in failing if r["feedback"].strip().startswith("All steps are correct")]
    print(f"reviews: {len(reviews)}; shown a program failing an example: {len(failing)}, "
          f"of which answered 'All steps are correct': {len(approving)}")


def _fails_an_example(evidence: str) -> bool:
    """'ran the program on the 3 examples of the question: 1 passed' -> True. Records keep the
    Reviewer's evidence as the text tools/code_runner.py writes, not the counts."""
    found = re.search(r"on the (\d+) examples? of the question: (\d+) passed", evidence)
    return bool(found) and int(found[2]) < int(found[1])


if __name__ == "__main__":
    asyncio.run(main())
