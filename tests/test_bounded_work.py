"""Work is bounded whatever a chain's length: a 4,000-line chain costs at most MAX_STEPS + 1
judge queries, a 1 MB completion little memory and time, and both say what was left out."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time

from magicore.agents.chain import Chain
from magicore.agents.fake import ScriptedFakeChatModel
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.graphs.nodes import score_chain
from magicore.tools.rewards.judge import LLMJudge
from magicore.tools.steps import MAX_SOLUTION_CHARS, MAX_STEP_CHARS, MAX_STEPS, bound_steps
from tests.test_cli import QUESTION

LONG_CHAIN = "".join(f"Step {i}: {i} + 1 = {i + 1}\n" for i in range(1, 4001)) + "The answer is \\boxed{4001}."


def test_a_long_chain_keeps_its_first_steps_and_its_last():
    chain = Chain.from_text(LONG_CHAIN)
    assert len(chain.steps) == MAX_STEPS and chain.answer == "4001"
    assert chain.steps[:2] == ["1 + 1 = 2", "2 + 1 = 3"] and chain.steps[-1].endswith("\\boxed{4001}.")
    assert chain.skipped == (f"scored {MAX_STEPS} of its 4,000 steps (the first {MAX_STEPS - 1} and the last); "
                             f"the outcome score read {MAX_SOLUTION_CHARS:,} of its {len(LONG_CHAIN):,} characters")


def test_a_long_step_keeps_its_head_and_tail():
    steps, note = bound_steps(["x" * 5000 + " so \\boxed{7}", "short"])
    assert len(steps[0]) == MAX_STEP_CHARS and steps[0].endswith("\\boxed{7}") and "characters skipped" in steps[0]
    assert steps[1] == "short" and note == f"cut 1 step to {MAX_STEP_CHARS:,} characters"
    assert bound_steps(["a", "b"]) == (["a", "b"], None)


def test_judging_a_4000_line_chain_costs_at_most_max_steps_plus_one_queries():
    judge_model = ScriptedFakeChatModel(responses=["Yes"])
    chain = Chain.from_text(LONG_CHAIN)
    scored = asyncio.run(score_chain(LLMJudge(judge_model), QUESTION, chain))
    assert len(judge_model.requests) == MAX_STEPS + 1  # each scored step, and the outcome
    assert len(scored.step_scores) == MAX_STEPS
    longest = max(len(str(m)) for r in judge_model.requests for m in r.get("messages", [r]))
    assert longest < MAX_STEPS * (MAX_STEP_CHARS + 100) + 2_000


def test_a_1mb_completion_costs_little_and_says_what_it_skipped():
    """`magicore solve` with the default reward for a server model (the LLM judge and the
    execution verifier) against a server whose every reply is about 1 MB."""
    with MockServer(MockSettings(mode="huge")) as server:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "magicore.ui.cli", "solve", QUESTION, "-k", "2", "--rounds", "0",
                               "--model", f"mock@{server.base_url}", "--timeout", "60"],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        seconds = time.monotonic() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        requests = list(server.settings.requests)
    assert proc.returncode == 0, proc.stderr
    assert "Answer: 42" in proc.stdout
    assert "(at most 4096 tokens per completion)" in proc.stdout  # the default limit, shown
    assert all(r.get("max_tokens") for r in requests)  # and sent
    assert (f"Note:   2 of 2 chains too long to score whole; the longest (1,0" in proc.stdout
            and f"scored {MAX_STEPS} of its 16,001 steps" in proc.stdout
            and f"the outcome score read {MAX_SOLUTION_CHARS:,} of its" in proc.stdout), proc.stdout  # fmt: skip
    assert len(requests) <= 1 + 2 * (MAX_STEPS + 1)  # the sample, then the judge's bounded queries
    assert peak_mb < 600 or before / 1024 >= 600, peak_mb  # was 3.8 GB
    assert seconds < 120  # was more than 6 minutes
