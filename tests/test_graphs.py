"""The method graphs with scripted models: shapes, the easy and hard paths, rounds, the pool."""

import os
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from magicore.graphs.api import asolve
from magicore.graphs.build import METHODS, build_graph
from magicore.graphs.config import MethodConfig
from magicore.graphs.state import Calibration
from tests.fakes import FakeAnswerReward, RoleScriptedModel, solution

SNAPSHOTS = Path(__file__).parent / "snapshots"
QUESTION = "A question whose answer is 8."
CAL = Calibration(mu=1.0, sigma=0.2)


@pytest.mark.parametrize("method", METHODS)
def test_graph_shape_matches_snapshot(method):
    model = RoleScriptedModel({})
    mermaid = build_graph(method, model=model, reward=FakeAnswerReward({})).get_graph().draw_mermaid()
    path = SNAPSHOTS / f"{method}.mmd"
    if os.environ.get("MAGICORE_UPDATE_SNAPSHOTS"):  # rewrite on purpose, then review the diff
        path.write_text(mermaid)
    assert path.exists(), f"no snapshot {path.name}: run with MAGICORE_UPDATE_SNAPSHOTS=1 and review it"
    assert mermaid == path.read_text()


def scripted(solver_answers, refine_answers=lambda n: "8", review="Step 2 is wrong: recompute it."):
    return RoleScriptedModel({
        "solver": lambda n, _m: solution(solver_answers[n % len(solver_answers)]),
        "reviewer": lambda n, _m: review,
        "refiner": lambda n, _m: solution(refine_answers(n)),
    })


# R = ORM + product of step scores. Calibration mu=1, sigma=0.2.
LOW = {"5": (0.3, 0.2), "6": (0.3, 0.2), "7": (0.3, 0.2), "9": (0.3, 0.2)}  # R=0.5, z=-2.5
HIGH = {"8": (0.9, 0.9)}  # R=1.8, z=+4


async def run(model, reward, *, k=4, rounds=3, events=None, **kw):
    config = MethodConfig(k=k, rounds=rounds, **kw)
    return await asolve(QUESTION, method="magicore", model=model, reward=reward, config=config,
                        calibration=CAL, on_event=(events.append if events is not None else None))


async def test_easy_question_stops_after_the_first_vote():
    model = scripted(["8", "8", "8", "5"])
    events = []
    result = await run(model, FakeAnswerReward({**LOW, **HIGH}), events=events)
    assert result.answer == "8" and result.rounds == 0
    assert len(result.route) == 1 and result.route[0]["hard"] is False and result.route[0]["cond1"] is True
    assert model.calls("reviewer") == [] and model.calls("refiner") == []
    assert result.votes == pytest.approx({"8": 3 * 1.8, "5": 0.5})
    assert [e["type"] for e in events] == ["chain"] * 4 + ["scores", "route", "final"]


async def test_route_all_refines_an_easy_question_once_then_the_test_decides():
    """route="all" (the ablation without coarse-to-fine routing): round 0 refines a question the
    test calls easy, the decision says it was forced, and round 1 stops on the test's word."""
    model = scripted(["8", "8", "8", "5"])
    result = await run(model, FakeAnswerReward({**LOW, **HIGH}), route="all")
    first, second = result.route
    assert first["hard"] and first["forced"] and first["cond1"]  # the test said easy
    assert not second["hard"] and not second["forced"] and second["round"] == 1
    assert result.rounds == 1 and result.answer == "8"
    assert len(model.calls("reviewer")) == 4 and len(model.calls("refiner")) == 4
    # the default never forces: the same question stops after the first vote
    adaptive = await run(scripted(["8", "8", "8", "5"]), FakeAnswerReward({**LOW, **HIGH}))
    assert adaptive.rounds == 0 and not adaptive.route[0]["forced"]


async def test_hard_question_is_reviewed_and_refined_until_easy():
    model = scripted(["5", "6", "7", "9"])  # four different low-reward answers: hard
    events = []
    result = await run(model, FakeAnswerReward({**LOW, **HIGH}), events=events)
    first, second = result.route
    assert first["hard"] and not first["cond1"] and first["orm_confidence"] < 0.5
    assert first["majority"] == "5"
    assert not second["hard"] and second["majority"] == "8"  # the majority is recomputed
    assert result.rounds == 1 and result.answer == "8"
    assert len(model.calls("reviewer")) == 4 and len(model.calls("refiner")) == 4
    # 2k LLM calls per round on top of the k samples
    assert result.usage_by_role["solver"]["llm_calls"] == 4
    assert result.usage_by_role["reviewer"]["llm_calls"] == 4 and result.usage_by_role["refiner"]["llm_calls"] == 4
    # the pool is the top-k of old plus new chains: all four refinements beat the originals
    assert [c.origin for c in result.chains] == ["refiner"] * 4 and {c.round for c in result.chains} == {1}
    # the Reviewer sees scores per step, the Refiner sees the feedback
    review_prompt = model.calls("reviewer")[0][-1].content
    assert "Step 2: So it is 5." in review_prompt and "(Score: 3/10)" in review_prompt
    assert "Step 2 is wrong: recompute it." in model.calls("refiner")[0][-1].content
    types = [e["type"] for e in events]
    assert types.count("review") == 4 and types.count("refinement") == 4 and types.count("route") == 2


async def test_rounds_stop_at_T_and_never_reset_to_round_zero():
    # every round the refinements are a little better than the pool, but still four different
    # answers below the calibration mean: hard each time
    model = scripted(["5", "6", "7", "9"], refine_answers=lambda n: str(10 * (n // 4 + 1) + n % 4))
    table = {**LOW, **{str(10 * r + i): (0.3 + 0.1 * r, 0.2) for r in (1, 2) for i in range(4)}}
    result = await run(model, FakeAnswerReward(table), rounds=2)
    assert result.rounds == 2 and len(result.route) == 3 and all(d["hard"] for d in result.route)
    assert [d["round"] for d in result.route] == [0, 1, 2]
    assert len(model.calls("reviewer")) == 8 and len(model.calls("refiner")) == 8
    # round-1 reviews look at the pool after round 1: the refined chains, not the originals
    round1 = [m[-1].content for m in model.calls("reviewer")[4:]]
    assert all("So it is 1" in p for p in round1)
    assert not any(f"So it is {a}." in p for p in round1 for a in "5679")
    assert sorted({r["round"] for r in result.reviews}) == [0, 1]
    assert {c.answer for c in result.chains} == {"20", "21", "22", "23"}


async def test_default_T_is_three_rounds():
    model = scripted(["5", "6", "7", "9"], refine_answers=lambda n: "5679"[n % 4])  # never gets better
    result = await asolve(QUESTION, method="magicore", model=model, reward=FakeAnswerReward(LOW),
                          config=MethodConfig(k=4), calibration=CAL)  # fmt: skip
    assert result.rounds == 3 and [d["round"] for d in result.route] == [0, 1, 2, 3]
    assert all(d["hard"] for d in result.route)
    assert len(model.calls("reviewer")) == 12 and len(model.calls("refiner")) == 12


async def test_the_new_majority_decides_the_route_after_refinement():
    # Round 0: six different answers, all below the mean (z = -2.5): hard, majority "5".
    # Refinement adds three 8s with R = 1.1 (z = +0.5) and three 4s with R = 0.02; the pool is
    # 8, 8, 8, 5, 6, 7. Its ORM-weighted vote is still spread (confidence < 0.5), so cond1 decides:
    # with the recomputed majority "8" it holds (easy); with the stale "5" it would fail (hard).
    model = scripted(["5", "6", "7", "9", "3", "2"], refine_answers=lambda n: "8" if n < 3 else "4")
    table = {a: (0.0, 0.5) for a in "567932"} | {"8": (0.8, 0.3), "4": (0.01, 0.01)}
    result = await run(model, FakeAnswerReward(table), k=6)
    first, second = result.route
    assert first["hard"] and first["majority"] == "5"
    assert second["majority"] == "8" and second["cond1"] and not second["hard"]
    assert second["orm_confidence"] < 0.5
    assert result.rounds == 1 and result.answer == "8"


async def test_chains_without_an_answer_have_their_steps_scored_but_no_step_reward():
    unanswered = "Step 1: I think hard.\nStep 2: I am not sure what to do."
    model = RoleScriptedModel({"solver": lambda n, _m: unanswered if n == 0 else solution("8")})
    result = await run(model, FakeAnswerReward(HIGH), k=4, rounds=0)
    chain = next(c for c in result.chains if c.answer is None)
    assert len(chain.step_scores) == 2  # the Reviewer would see a score on every step
    assert chain.reward == pytest.approx(chain.orm)  # R = ORM + 0


async def test_pool_keeps_the_top_k_by_reward_across_rounds():
    # refinements alternate between a better (8) and a worse (4) answer than the originals
    model = scripted(["5", "6", "7", "9"], refine_answers=lambda n: "8" if n % 2 == 0 else "4")
    table = {**LOW, "8": (0.6, 0.5), "4": (0.01, 0.01)}  # R(8)=1.1, R(4)=0.02, R(originals)=0.5
    result = await run(model, FakeAnswerReward(table), rounds=1)
    rewards = sorted((round(c.reward, 3) for c in result.chains), reverse=True)
    assert rewards == [1.1, 1.1, 0.5, 0.5]  # two refined 8s, then the best two originals
    assert result.answer == "8"


async def test_keep_parameter_sets_the_pool_size():
    model = scripted(["8", "8", "5", "5", "8", "5"])
    result = await run(model, FakeAnswerReward({**LOW, **HIGH}), k=6, keep=3)
    assert len(result.chains) == 3 and all(c.answer == "8" for c in result.chains)


async def test_baselines():
    sc_model = scripted(["5", "8", "5", "9"])
    sc = await asolve(QUESTION, method="sc", model=sc_model, config=MethodConfig(k=4))
    assert sc.answer == "5" and sc.votes == {"5": 2.0, "8": 1.0, "9": 1.0} and sc.llm_calls == 4

    bok = await asolve(QUESTION, method="bok", model=scripted(["5", "8", "5", "9"]),
                       reward=FakeAnswerReward({**LOW, **HIGH}), config=MethodConfig(k=4))
    assert bok.answer == "8" and bok.votes == pytest.approx({"8": 1.8})


async def test_self_refine_stops_when_feedback_says_correct():
    feedback = iter(["Step 1 is wrong.", "The solution is correct."])
    model = RoleScriptedModel({
        "solver": lambda n, _m: solution("5"),
        "feedback": lambda n, _m: next(feedback),
        "revise": lambda n, _m: solution("8"),
    })
    result = await asolve(QUESTION, method="self-refine", model=model, config=MethodConfig(k=4))
    assert result.answer == "8" and result.rounds == 1
    assert result.usage_by_role["solver"]["llm_calls"] == 1  # one chain, whatever k is
    assert len(model.calls("feedback")) == 2 and len(model.calls("revise")) == 1
    # the revision sees the draft and its feedback
    assert "Step 1 is wrong." in model.calls("revise")[0][-1].content


async def test_self_refine_stops_after_the_round_limit_with_history():
    model = RoleScriptedModel({
        "solver": lambda n, _m: solution("1"),
        "feedback": lambda n, _m: f"Attempt {n + 1} is not correct.",
        "revise": lambda n, _m: solution(str(n + 2)),
    })
    result = await asolve(QUESTION, method="self-refine", model=model, config=MethodConfig(self_refine_rounds=3))
    assert result.rounds == 3 and result.answer == "4"
    assert len(model.calls("revise")) == 3 and len(model.calls("feedback")) == 3
    last = model.calls("revise")[-1][-1].content
    assert all(f"Attempt {i} is not correct." in last for i in (1, 2, 3))


async def test_interrupted_refinement_resumes_without_redoing_finished_nodes():
    crash = {"armed": True}

    def refine(n, _messages):
        if n == 2 and crash["armed"]:
            crash["armed"] = False
            raise RuntimeError("refiner process crashed")
        return solution("8")

    model = RoleScriptedModel({
        "solver": lambda n, _m: solution(["5", "6", "7", "9"][n % 4]),
        "reviewer": lambda n, _m: "Step 2 is wrong.",
        "refiner": refine,
    })
    graph = build_graph("magicore", model=model, reward=FakeAnswerReward({**LOW, **HIGH}),
                        config=MethodConfig(k=4, rounds=3), checkpointer=InMemorySaver())
    run_config = {"configurable": {"thread_id": "t1"}}
    with pytest.raises(Exception, match="refiner process crashed"):
        await graph.ainvoke({"question": QUESTION, "calibration": CAL}, run_config)
    snapshot = await graph.aget_state(run_config)
    assert snapshot.next == ("refine",)

    final = await graph.ainvoke(None, run_config)
    assert final["answer"] == "8" and final["rounds"] == 1
    assert len(model.calls("solver")) == 4  # sampled once (n=4 in one request), not again
    assert len(model.calls("reviewer")) == 4  # reviews were finished: not redone
    assert len(model.calls("refiner")) == 5  # 3 finished + 1 crashed + the crashed one again
