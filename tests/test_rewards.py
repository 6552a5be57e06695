"""Reward models: the chain reward, the LLM judge (scripted and real), combinations, specs."""

import math

import pytest

from magicore.agents.fake import ScriptedFakeChatModel
from magicore.tools.errors import InputError
from magicore.tools.llm import Completion
from magicore.tools.usage import track_usage
from magicore.tools.rewards.base import chain_reward
from magicore.tools.rewards.combine import CombinedReward, ConstantReward, combine
from magicore.tools.rewards.judge import LLMJudge, p_yes
from magicore.tools.rewards.spec import build_reward, default_reward_spec, parse_reward_spec

QUESTION = "Tom has 16 eggs, eats 3 and bakes with 4. He sells the rest at $2 each. How much does he make?"
STEPS = ["16 - 3 - 4 = 9 eggs are left.", "9 * 2 = 18 dollars.", "The answer is \\boxed{18}."]


def test_chain_reward_is_orm_plus_product():
    assert chain_reward(0.5, [0.5, 0.4]) == pytest.approx(0.7)
    assert chain_reward(0.2, []) == 0.2


def lp(token, p):
    return {"token": token, "logprob": math.log(p)}


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ([lp("Yes", 0.6), lp("No", 0.2)], 0.75),
        ([lp(" yes", 0.3), lp("Yes", 0.3), lp("No.", 0.2)], 0.75),
        ([lp("No", 0.9), lp("Maybe", 0.05)], 0.0),
        ([lp("The", 0.9), lp("Correct", 0.05), lp("Wrong", 0.05)], 0.5),
    ],
)
def test_p_yes_from_top_logprobs(top, expected):
    completion = Completion(text=top[0]["token"], logprobs=[{**top[0], "top_logprobs": top}])
    assert p_yes(completion) == pytest.approx(expected)


def test_p_yes_falls_back_to_text_then_neutral():
    assert p_yes(Completion(text="Yes.")) == 1.0
    assert p_yes(Completion(text="no")) == 0.0
    assert p_yes(Completion(text="Perhaps"), neutral=0.3) == 0.3


async def test_judge_scores_each_step_with_the_earlier_steps_in_context():
    model = ScriptedFakeChatModel(responses=["Yes"], logprob=lambda _text: 0.8)
    judge = LLMJudge(model)
    with track_usage() as used:
        scores = await judge.ascore_steps(QUESTION, STEPS)
    assert scores == pytest.approx([0.8, 0.8, 0.8])
    assert used.llm_calls == 3
    prompts = sorted((r["messages"][-1].content for r in model.requests), key=len)
    assert "Step 1 to check: 16 - 3 - 4 = 9" in prompts[0] and "Earlier steps" not in prompts[0]
    assert "Step 1: 16 - 3 - 4 = 9 eggs are left." in prompts[2] and "Step 3 to check" in prompts[2]
    assert all(r["max_tokens"] == 1 and r["logprobs"] and r["temperature"] == 0.0 for r in model.requests)
    outcome = await judge.ascore_outcome(QUESTION, "\n".join(STEPS))
    assert outcome == pytest.approx(0.8)
    assert "Is the final answer correct?" in model.requests[-1]["messages"][-1].content


async def test_judge_asks_about_a_code_question_as_code():
    question = 'def add(a, b):\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    """\n'
    steps = ["Step 1: Add the two numbers.", "Step 2:\n```python\ndef add(a, b):\n    return a + b\n```"]
    model = ScriptedFakeChatModel(responses=["Yes"], logprob=lambda _text: 0.7)
    judge = LLMJudge(model)
    assert await judge.ascore_steps(question, steps) == pytest.approx([0.7, 0.7])
    assert await judge.ascore_outcome(question, "\n".join(steps)) == pytest.approx(0.7)
    systems = [r["messages"][0].content for r in model.requests]
    assert all("programming tasks" in s and "math" not in s for s in systems)
    assert "Is the final program correct?" in model.requests[-1]["messages"][-1].content
    assert "Task:\ndef add(a, b):" in model.requests[-1]["messages"][-1].content
    # a word problem keeps the math wording
    await judge.ascore_outcome(QUESTION, "\n".join(STEPS))
    assert "math problems" in model.requests[-1]["messages"][0].content
    # a family given when the reward is built wins over the question's look
    told = build_reward("prm=judge,orm=judge", judge_model=model, family="code").outcome[0]
    await told.ascore_outcome("Write a function is_even(n) that says whether n is even.", "def is_even(n): ...")
    assert "programming tasks" in model.requests[-1]["messages"][0].content
    await LLMJudge(model, family="word").ascore_outcome(question, "\n".join(steps))
    assert "math problems" in model.requests[-1]["messages"][0].content


async def test_judge_batch_and_no_steps():
    model = ScriptedFakeChatModel(responses=["No"], logprob=lambda _t: 0.9)
    judge = LLMJudge(model)
    assert await judge.ascore_steps_batch(QUESTION, [STEPS[:1], STEPS[:2]]) == [[pytest.approx(0.1)]] + [[pytest.approx(0.1)] * 2]
    assert await judge.ascore_steps(QUESTION, []) == []


@pytest.mark.parametrize(("rule", "expected"), [("product", 0.12), ("mean", 0.4), ("min", 0.2)])
def test_combine_rules(rule, expected):
    assert combine([0.6, 0.2], rule) == pytest.approx(expected)


async def test_combined_reward_reports_components():
    a, b = ConstantReward(0.5), ConstantReward(0.8)
    combined = CombinedReward([a, b], [b], step_rule="product")
    assert combined.name == "prm=const(0.5)*const(0.8);orm=const(0.8)"
    scores, parts = await combined.ascore_steps_detailed("q", ["s1", "s2"])
    assert scores == pytest.approx([0.4, 0.4])
    assert parts == {"const(0.5)": [0.5, 0.5], "const(0.8)": [0.8, 0.8]}
    assert await combined.ascore_outcome("q", "s") == pytest.approx(0.8)


def test_sync_wrappers_outside_an_event_loop():
    reward = CombinedReward([ConstantReward(0.5)], [ConstantReward(0.8)])
    assert reward.score_steps("q", ["a", "b"]) == [0.5, 0.5]
    assert reward.score_outcome("q", "s") == 0.8


def test_reward_spec_grammar():
    assert parse_reward_spec("verifier") == ((["verifier"], "product"), (["verifier"], "product"))
    assert parse_reward_spec("prm=judge*verifier,orm=judge+const:0.5") == (
        (["judge", "verifier"], "product"), (["judge", "const:0.5"], "mean"))
    for bad in ["", "prm=judge", "prm=a*b+c,orm=x", "a,b", "prm=x,prm=y,orm=z", "foo=bar,orm=x"]:
        with pytest.raises(InputError):
            parse_reward_spec(bad)


def test_build_reward_from_a_spec():
    model = ScriptedFakeChatModel(responses=["Yes"])
    reward = build_reward("prm=judge*const:0.5,orm=judge", judge_model=model)
    assert reward.name == "prm=judge(scripted-fake)*const(0.5);orm=judge(scripted-fake)"
    assert reward.steps[0] is reward.outcome[0]  # one judge, shared
    with pytest.raises(InputError, match="unknown reward backend 'oracle'"):
        build_reward("oracle")
    with pytest.raises(InputError, match="needs a chat model"):
        build_reward("judge")


def test_a_judge_on_another_model_is_built_by_the_graph():
    from magicore.graphs.build import resolve_reward

    solver = ScriptedFakeChatModel(responses=["Yes"])
    reward = resolve_reward("prm=judge:vllm:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:9/v1*verifier,orm=judge",
                            solver)  # fmt: skip
    judge = reward.steps[0]
    assert isinstance(judge, LLMJudge) and judge.model is not solver
    assert judge.model.model_name == "Qwen/Qwen2.5-7B-Instruct"
    assert str(judge.model.openai_api_base).startswith("http://127.0.0.1:9/v1")
    assert reward.outcome[0].model is solver  # plain `judge` is the solver's model


def test_default_reward_says_the_embedded_judge_is_not_used():
    assert default_reward_spec("llama.cpp") == "verifier"
    assert default_reward_spec("vllm") == "prm=judge*verifier,orm=judge"


@pytest.mark.embedded
async def test_judge_on_the_real_embedded_model():
    from magicore.agents.backends import chat_model

    judge = LLMJudge(chat_model("embedded:smollm2"))
    with track_usage() as used:
        scores = await judge.ascore_steps(QUESTION, STEPS)
        outcome = await judge.ascore_outcome(QUESTION, "\n".join(STEPS))
    assert len(scores) == len(STEPS)
    assert all(0.0 <= s <= 1.0 for s in scores + [outcome])
    # real logprobs, not the text fallback: the probabilities are not all exactly 0 or 1
    assert any(0.0 < s < 1.0 for s in scores + [outcome])
    assert used.llm_calls == 4 and used.output_tokens == 4
