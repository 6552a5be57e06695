"""Every method end to end on a real embedded model (SmolLM2-135M-Instruct, `embedded:smollm2`).

Small settings (k = 2 or 3, one round, 96 tokens per completion) keep the whole file within a few
minutes on 2 cores. The assertions are about structure (the calls each method must make, the
rounds, the scores), never about the tiny model's arithmetic. One embedded server serves every
test; one event loop for the module keeps the model's HTTP client on a live loop.
"""

from __future__ import annotations

import pytest

from magicore.graphs.api import asolve
from magicore.graphs.config import MethodConfig
from magicore.graphs.state import Calibration

pytestmark = [pytest.mark.embedded, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have now?"
MAX_TOKENS = 96


@pytest.fixture(scope="module")
def model():
    from magicore.agents.backends import chat_model

    # starts the shared server; it stops when the process exits. The timeout bounds each call
    # with its retries (docs/reliability.md): generous, as these tests check structure, not speed,
    # and a machine shared with other work may queue a call for minutes.
    return chat_model("embedded:smollm2", timeout=600)


def config(**kw) -> MethodConfig:
    return MethodConfig(**{"k": 2, "rounds": 1, "max_tokens": MAX_TOKENS, "seed": 3, **kw})


def assert_usage(result, role: str, calls: int):
    used = result.usage_by_role[role]
    assert used["llm_calls"] == calls, (role, used)
    # llama-server honours n: the Solver's k samples are one request; other roles send one each
    assert used["requests"] == (min(calls, 1) if role == "solver" else calls), (role, used)
    if calls:  # (a completion may be empty, so output tokens are checked per run, not per role)
        assert used["input_tokens"] > 0 and used["output_tokens"] <= calls * MAX_TOKENS


def assert_answer(result):
    assert result.answer is None or isinstance(result.answer, str)
    if result.answer is not None:
        assert result.answer in result.votes and result.votes[result.answer] == max(result.votes.values())
    roles = result.usage_by_role.values()
    assert result.llm_calls == sum(r["llm_calls"] for r in roles)
    assert result.output_tokens == sum(r["output_tokens"] for r in roles) > 0
    assert result.seconds > 0


async def test_magicore_hard_path_reviews_and_refines(model):
    # Forced hard: the PRM is the constant 0, so the PRM vote has total 0 and confidence 0, and
    # mu = 10 puts every chain (R = ORM + 0 <= 1) far below the calibration mean, so cond1 fails.
    # (With k <= 3 chains a vote with a positive total never has confidence < 0.5, so a zero
    # total is the only way to make a question hard whatever the model writes.)
    events = []
    result = await asolve(QUESTION, method="magicore", model=model, reward="prm=const:0,orm=verifier",
                          config=config(k=2), calibration=Calibration(mu=10.0, sigma=1.0),
                          on_event=events.append)  # fmt: skip
    assert_answer(result)
    assert result.method == "magicore"
    # evaluated after solving and after the one refinement round; hard both times; stops at T = 1
    assert [(d["round"], d["hard"], d["cond1"]) for d in result.route] == [(0, True, False), (1, True, False)]
    assert all(d["prm_confidence"] == 0.0 and d["calibration"] == "given" for d in result.route)
    assert result.rounds == 1
    # k samples, then k reviews and k refinements (2k calls per round); the verifier and the
    # constant make no LLM calls, but the reward role is still accounted for
    assert_usage(result, "solver", 2)
    assert_usage(result, "reviewer", 2)
    assert_usage(result, "refiner", 2)
    assert result.usage_by_role["reward"]["llm_calls"] == 0
    assert result.llm_calls == 6
    assert len(result.reviews) == 2 and {r["round"] for r in result.reviews} == {0}
    assert all(isinstance(r["feedback"], str) for r in result.reviews)
    assert len(result.refinements) == 2
    assert all(c.origin == "refiner" and c.round == 1 for c in result.refinements)
    # the final pool is the top k of the old and new chains, every one scored
    assert len(result.chains) == 2
    assert all(c.scored and c.step_scores and set(c.step_scores) == {0.0} for c in result.chains)
    assert all(0.0 <= c.orm <= 1.0 for c in result.chains)
    types = [e["type"] for e in events]
    assert types.count("chain") == 2 and types.count("scores") == 2 and types.count("route") == 2
    assert types.count("review") == 2 and types.count("refinement") == 2 and types[-1] == "final"


async def test_self_consistency(model):
    result = await asolve(QUESTION, method="sc", model=model, config=config(k=3))
    assert_answer(result)
    assert result.method == "sc" and result.rounds == 0 and result.route == []
    assert list(result.usage_by_role) == ["solver"]  # no reward model, no other role
    assert_usage(result, "solver", 3)
    assert len(result.chains) == 3 and all(c.text.strip() for c in result.chains)
    assert not any(c.scored for c in result.chains)  # self-consistency scores nothing
    # one vote per chain with an answer
    assert sum(result.votes.values()) == sum(c.parsed for c in result.chains)


async def test_best_of_k_with_an_llm_judge(model):
    # steps by the verifier, outcome by the model as judge: the judge's calls count as "reward"
    result = await asolve(QUESTION, method="bok", model=model, reward="prm=verifier,orm=judge", config=config(k=2))
    assert_answer(result)
    assert result.method == "bok" and result.rounds == 0 and result.route == []
    assert_usage(result, "solver", 2)
    reward = result.usage_by_role["reward"]
    assert reward["llm_calls"] == 2 and reward["input_tokens"] > 0  # one outcome query per chain
    assert reward["output_tokens"] <= 2 * 2  # one-token Yes/No answers
    assert len(result.chains) == 2 and all(c.scored for c in result.chains)
    best = max((c for c in result.chains if c.parsed), key=lambda c: c.reward, default=None)
    if best is None:
        assert result.answer is None and result.votes == {}
    else:
        assert result.answer == best.answer and result.votes == pytest.approx({best.answer: best.reward})


async def test_self_refine(model):
    result = await asolve(QUESTION, method="self-refine", model=model, config=config(k=3, self_refine_rounds=1))
    assert_answer(result)
    assert result.method == "self-refine" and result.route == []
    assert result.rounds in (0, 1)  # 0: the first feedback said the draft is correct
    assert_usage(result, "solver", 1)  # one draft, whatever k is
    assert_usage(result, "reviewer", 1)  # the model's feedback on its own draft
    if result.rounds:
        assert_usage(result, "refiner", 1)
    else:
        assert "refiner" not in result.usage_by_role
    assert len(result.drafts) == result.rounds + 1
    assert isinstance(result.drafts[0]["feedback"], str)
    assert result.answer == result.drafts[-1]["answer"]
