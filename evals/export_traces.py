"""The refinement traces inside one benchmark record, each solution judged and traced to its source.

A record ({config}.jsonl) keeps the final chains, the Reviewer's reviews (each with the solution
it reviewed), the Refiner's refinements and Self-Refine's drafts. This module turns them into
`Solution`s (a text, its scores, right or wrong by the dataset's judge, where it came from) and
`Revision`s (a draft, the feedback it got, the revision written from it). Imports nothing
but the judge type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from magicore.evals.export_judges import Judge


@dataclass(frozen=True)
class Solution:
    """One solution of a problem. `source` names it: record[source["field"]][source["chain"]]."""

    chain: dict  # the chain as recorded: text, steps, answer, step_scores, orm, round, ...
    correct: bool
    source: dict

    @property
    def text(self) -> str:
        return self.chain.get("text") or ""

    @property
    def round(self) -> int:
        return int(self.source.get("round") or 0)

    @property
    def step_scores(self) -> list[float] | None:
        return self.chain.get("step_scores")


@dataclass(frozen=True)
class Revision:
    """A draft, the feedback on it, and the revision written from both.

    `style` is "magicore" (the Reviewer's feedback on a scored solution, evidence included) or
    "self-refine" (the model's own feedback; `history` holds the earlier drafts and feedback).
    """

    style: str
    draft: Solution
    feedback: str
    revision: Solution
    evidence: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


@dataclass
class Trace:
    """What one record holds for training: final solutions, sampled ones, and revisions."""

    record: dict
    finals: list[Solution]
    samples: list[Solution]
    revisions: list[Revision]
    unlinked_reviews: int = 0  # reviews recorded without the solution they reviewed (older runs)


def trace_record(record: dict, judge: Judge, base: dict) -> Trace:
    """The record's solutions and revisions; `base` is the provenance every source starts from
    (run, config, method, problem)."""
    if record.get("method") == "self-refine" or record.get("drafts"):
        return _self_refine_trace(record, judge, base)
    return _magicore_trace(record, judge, base)


def _solution(record: dict, chain: dict, judge: Judge, base: dict, where: str, index: int, **extra) -> Solution:
    source = {**base, "field": where, "chain": index, "round": int(chain.get("round") or 0), **extra}
    return Solution(chain=chain, correct=judge(record, chain), source=source)


def _magicore_trace(record: dict, judge: Judge, base: dict) -> Trace:
    finals = [_solution(record, c, judge, base, "chains", i) for i, c in enumerate(record.get("chains") or [])]
    samples = [s for s in finals if s.chain.get("origin", "solver") == "solver"]
    refinements = record.get("refinements") or []
    revisions, unlinked = [], 0
    for r_index, review in enumerate(record.get("reviews") or []):
        reviewed = review.get("solution")
        j = next((j for j, c in enumerate(refinements)
                  if c.get("parent") == review.get("chain_index") and c.get("round") == review.get("round", 0) + 1),
                 None)  # fmt: skip
        if reviewed is None or j is None:
            unlinked += 1
            continue
        draft = _solution(record, reviewed, judge, base, "reviews", r_index, pool_index=review.get("chain_index"))
        revision = _solution(record, refinements[j], judge, base, "refinements", j, review=r_index,
                             parent=review.get("chain_index"))  # fmt: skip
        revisions.append(Revision(style="magicore", draft=draft, feedback=review.get("feedback") or "",
                                  revision=revision, evidence=list(review.get("evidence") or [])))  # fmt: skip
    return Trace(record=record, finals=finals, samples=samples, revisions=revisions, unlinked_reviews=unlinked)


def _self_refine_trace(record: dict, judge: Judge, base: dict) -> Trace:
    """Self-Refine@K: K runs, each a list of drafts (draft j's feedback led to draft j+1)."""
    runs: dict[int, list[tuple[int, dict]]] = {}
    for index, draft in enumerate(record.get("drafts") or []):
        runs.setdefault(int(draft.get("chain") or 0), []).append((index, draft))
    finals, samples, revisions = [], [], []
    for run, drafts in runs.items():
        solutions = [_solution(record, {**d, "round": j}, judge, base, "drafts", index, sample=run)
                     for j, (index, d) in enumerate(drafts)]  # fmt: skip
        samples.append(solutions[0])
        finals.append(solutions[-1])
        for j in range(len(drafts) - 1):
            feedback = drafts[j][1].get("feedback")
            if not feedback:
                continue
            history = [{"text": d.get("text") or "", "feedback": d.get("feedback")} for _, d in drafts[:j]]
            revisions.append(Revision(style="self-refine", draft=solutions[j], feedback=feedback,
                                      revision=solutions[j + 1], history=history))  # fmt: skip
    return Trace(record=record, finals=finals, samples=samples, revisions=revisions)
