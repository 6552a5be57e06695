"""What review and refinement did on MATH-500's ablation (magicore-all@4, every problem refined).

For each problem it compares the 4 sampled chains (the pool the ablation reviewed; sc@4's
records keep them) with their round-1 refinements, graded against the gold answer the way the
bench grades, and counts how the Reviewer answered. It reads the committed records only and
changes nothing. Usage, from the repository root:

    .venv/bin/python docs/results/math500-refinements.py [RUN_DIR]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from magicore.evals.bench_store import load_results
from magicore.evals.datasets import load_problems
from magicore.tools.answers import answers_match

RUN = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "math500-qwen2.5-coder-1.5b")
K = 4


def main() -> None:
    problems = {p.id: p for p in load_problems("math500")}
    ablation, magicore, sampled = (load_results(RUN, c) for c in ("magicore-all@4", "magicore@4", "sc@4"))
    chains = Counter()  # (draft right, refinement right) per refined chain
    problems_more = problems_fewer = 0
    for pid, record in ablation.items():
        if record.get("error"):
            continue
        gold = problems[pid].answer
        drafts = [c.get("answer") for c in sampled[pid]["chains"][:K]]
        for refinement in (r for r in record["refinements"] if r.get("round", 1) == 1):
            draft = drafts[refinement["parent"]] if refinement.get("parent") is not None else None
            chains[(answers_match(draft, gold), answers_match(refinement.get("answer"), gold))] += 1
        right_before = sum(answers_match(a, gold) for a in drafts)
        right_after = sum(answers_match(r.get("answer"), gold) for r in record["refinements"] if r.get("round", 1) == 1)
        problems_more += right_after > right_before
        problems_fewer += right_after < right_before
    done = [r for r in ablation.values() if not r.get("error")]
    print(f"problems: {len(ablation)} ({len(ablation) - len(done)} ended in an error)")
    print(f"round-1 refinements: {sum(chains.values())}; wrong draft made right: {chains[(False, True)]}; "
          f"right draft made wrong: {chains[(True, False)]}; right both: {chains[(True, True)]}; "
          f"wrong both: {chains[(False, False)]}")  # fmt: skip
    print(f"problems with more right chains after refinement: {problems_more}; with fewer: {problems_fewer}")
    fixed = [pid for pid, r in ablation.items() if r["correct"] and not magicore[pid]["correct"]]
    broken = [pid for pid, r in ablation.items() if not r["correct"] and magicore[pid]["correct"]]
    print(f"against magicore@4: right only with refinement {len(fixed)} {fixed}; wrong only with it {len(broken)} "
          f"{broken}")  # fmt: skip
    reviews = [r for record in done for r in record["reviews"]]
    approving = [r for r in reviews if r["feedback"].strip().startswith("All steps are correct")]
    verbatim = [r for r in reviews if r["feedback"].strip() == "All steps are correct."]
    print(f"reviews: {len(reviews)}; starting 'All steps are correct': {len(approving)}, "
          f"of which word for word: {len(verbatim)}")  # fmt: skip
    hard_later = sum(any(d["hard"] for d in r["route"][1:]) for r in done)
    rounds = Counter(r["rounds"] for r in done)
    print(f"rounds run: {dict(sorted(rounds.items()))}; problems the test sent on after round 1: {hard_later}")


if __name__ == "__main__":
    main()
