"""The three training formats, as Hugging Face TRL's trainers read them (conversational).

- `sft`: {"messages": [system, user, assistant]}: the Solver's own prompt, then a correct solution.
- `critique`: {"prompt": [...], "completion": [assistant]} with `task` "review" (question and
  scored solution, then the feedback) or "refine" (question, solution and feedback, then the
  revision). The prompts are the ones the Reviewer and Refiner (or Self-Refine) were given.
- `dpo`: {"prompt": [system, user], "chosen": [assistant], "rejected": [assistant]}: the Solver's
  prompt, a correct solution, and a wrong one to the same question.

Every example also has `source`: where it came from. The prompts are rendered from the roles'
own templates (agents/prompts/), so a model trained on them sees what it sees when it runs.
Imports agents, graphs (the methods' defaults) and evals; never ui.
"""

from __future__ import annotations

from collections.abc import Iterator

from magicore.agents.chain import Chain
from magicore.agents.prompts import render_messages
from magicore.agents.refiner import ANSWER_FORMAT, DEFAULT_FORMAT, Refiner
from magicore.agents.reviewer import Reviewer
from magicore.evals.export_traces import Revision, Solution, Trace
from magicore.graphs.config import MethodConfig

FORMATS = ("sft", "critique", "dpo")


def chat(pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def solver_prompt(question: str, family: str) -> list[dict]:
    return chat(render_messages("solver", family, question=question))


def _chain(solution: Solution) -> Chain:
    return Chain.model_validate({k: v for k, v in solution.chain.items() if k in Chain.model_fields})


def review_prompt(question: str, family: str, rev: Revision) -> list[dict]:
    if rev.style == "self-refine":
        drafts = [*rev.history, {"text": rev.draft.text, "feedback": None}]
        return chat(render_messages("self_refine", "feedback", question=question, drafts=drafts,
                                    current=rev.draft.text))  # fmt: skip
    # The Reviewer's prompt needs no model; only its template and the benchmark's threshold.
    reviewer = Reviewer(None, threshold=MethodConfig().review_threshold)
    return chat(reviewer.messages(question, _chain(rev.draft), rev.evidence, family))


def refine_prompt(question: str, family: str, rev: Revision) -> list[dict]:
    if rev.style == "self-refine":
        drafts = [*rev.history, {"text": rev.draft.text, "feedback": rev.feedback}]
        return chat(render_messages("self_refine", "revise", question=question, drafts=drafts,
                                    answer_format=ANSWER_FORMAT.get(family, DEFAULT_FORMAT)))  # fmt: skip
    return chat(Refiner(None).messages(question, _chain(rev.draft), rev.feedback, family))


def sft_examples(trace: Trace, family: str, keep) -> Iterator[dict]:
    """The record's final correct solutions, each after the Solver's prompt."""
    question = trace.record["question"]
    for solution in trace.finals:
        if solution.correct and keep(trace.record, solution):
            yield {"messages": solver_prompt(question, family) + assistant(solution.text), "source": solution.source}


def critique_examples(trace: Trace, family: str, keep, only_correct: bool) -> Iterator[dict]:
    """For each revision: a "review" example, then a "refine" example."""
    question = trace.record["question"]
    for rev in trace.revisions:
        if (only_correct and not rev.revision.correct) or not keep(trace.record, rev.revision):
            continue
        labels = {"style": rev.style, "draft_correct": rev.draft.correct, "revision_correct": rev.revision.correct}
        source = {**rev.revision.source, "draft": rev.draft.source}
        yield {"prompt": review_prompt(question, family, rev), "completion": assistant(rev.feedback),
               "task": "review", **labels, "source": source}  # fmt: skip
        yield {"prompt": refine_prompt(question, family, rev), "completion": assistant(rev.revision.text),
               "task": "refine", **labels, "source": source}  # fmt: skip


def dpo_examples(trace: Trace, family: str, keep) -> Iterator[dict]:
    """Preference pairs, judged by the dataset's ground truth: first each correct revision over
    the wrong draft it revised; then each wrong sample under a correct sample (taken in turn)."""
    question = trace.record["question"]
    prompt = solver_prompt(question, family)

    def pair(chosen: Solution, rejected: Solution, kind: str) -> dict:
        return {"prompt": prompt, "chosen": assistant(chosen.text), "rejected": assistant(rejected.text),
                "pair": kind, "source": {**chosen.source, "rejected": rejected.source}}  # fmt: skip

    for rev in trace.revisions:
        if rev.revision.correct and not rev.draft.correct and keep(trace.record, rev.revision):
            yield pair(rev.revision, rev.draft, "revision")
    right = [s for s in trace.samples if s.correct and keep(trace.record, s)]
    wrong = [s for s in trace.samples if not s.correct]
    for i, rejected in enumerate(wrong if right else []):
        yield pair(right[i % len(right)], rejected, "samples")
