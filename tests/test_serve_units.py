"""Exact tests of the server's logic without a server: model names, per-request settings and
limits, the question with a conversation's earlier turns, progress lines, error statuses."""

from __future__ import annotations

import asyncio

import pytest

from magicore.tools.errors import InputError, ModelError, SetupError
from magicore.ui.server.conversation import Conversations, compose, redact
from magicore.ui.server.errors import APIError, from_exception
from magicore.ui.server.methods import Limits, check_request_reward, method_config, split_name
from magicore.ui.server.progress import describe
from magicore.ui.server.schema import ChatRequest


def request(**fields) -> ChatRequest:
    return ChatRequest(model="magicore", messages=[{"role": "user", "content": "q"}], **fields)


@pytest.mark.parametrize("name, expected", [
    ("magicore", ("magicore", None)), ("magicore-sc", ("sc", None)), ("MAGICORE-BOK", ("bok", None)),
    ("magicore-self-refine", ("self-refine", None)),
    ("magicore/Qwen/Qwen2.5-7B-Instruct", ("magicore", "Qwen/Qwen2.5-7B-Instruct")),
])  # fmt: skip
def test_model_names_pick_the_method_and_the_underlying_model(name, expected):
    assert split_name(name) == expected


@pytest.mark.parametrize("name", ["gpt-4o", "magicore-x", "magicore/", "sc"])
def test_unknown_model_names_are_a_400_naming_the_choices(name):
    with pytest.raises(APIError) as caught:
        split_name(name)
    assert caught.value.status == 400 and caught.value.param == "model"
    assert "magicore-self-refine" in caught.value.message


def test_settings_come_from_the_request_within_the_limits():
    limits = Limits(max_k=16, max_rounds=5, default_k=6)
    config = method_config(request(k=12, rounds=2, temperature=0.4, seed=3, max_tokens=50), "magicore", limits)
    assert (config.k, config.rounds, config.self_refine_rounds, config.temperature, config.seed, config.max_tokens) \
        == (12, 2, 2, 0.4, 3, 50)  # fmt: skip
    assert method_config(request(), "magicore", limits).k == 6  # the server's default
    assert method_config(request(k=9), "self-refine", limits).k == 1  # one chain, whatever k says
    assert method_config(request(max_tokens=10, max_completion_tokens=20), "sc", limits).max_tokens == 20
    for fields, param in (({"k": 17}, "k"), ({"rounds": 6}, "rounds")):
        with pytest.raises(APIError) as caught:
            method_config(request(**fields), "magicore", limits)
        assert caught.value.status == 400 and caught.value.param == param


@pytest.mark.parametrize("spec", ["verifier", "judge", "prm=judge*verifier,orm=const:0.5", "const:0.3"])
def test_a_request_may_choose_rewards_that_name_no_server(spec):
    assert check_request_reward(spec) == spec


@pytest.mark.parametrize("spec, fragment", [
    ("vllm:rm@http://10.0.0.1:8000", "names a model or server"),
    ("judge:openai:gpt-4o", "names a model or server"),
    ("prm=verifier,orm=shepherd:m@http://x", "names a model or server"),
    ("nonsense", "reward:"),
])  # fmt: skip
def test_rewards_naming_servers_or_malformed_are_refused(spec, fragment):
    with pytest.raises(APIError) as caught:
        check_request_reward(spec)
    assert caught.value.status == 400 and fragment in caught.value.message


def test_the_question_carries_the_latest_earlier_turns_that_fit():
    turns = [{"role": "user", "content": "What is 40 + 2?"}, {"role": "assistant", "content": "42"},
             {"role": "system", "content": "not shown"}, {"role": "user", "content": "And doubled?"},
             {"role": "assistant", "content": "84"}]  # fmt: skip
    text = compose(turns, "And halved?", 10_000)
    assert text.startswith("Earlier in this conversation:")
    assert text.index("User: What is 40 + 2?") < text.index("Assistant: 42") < text.index("User: And doubled?")
    assert "not shown" not in text and text.endswith("New question: And halved?")
    # too long for everything: the oldest turns go first, then all of them
    short = compose(turns, "And halved?", len(text) - 10)
    assert "What is 40 + 2?" not in short and "And doubled?" in short
    assert compose(turns, "And halved?", 20) == "And halved?"
    assert compose([], "Q?", 100) == "Q?"


def test_a_long_conversation_is_composed_with_a_few_renders(monkeypatch):
    from magicore.ui.server import conversation

    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * (i % 37)}
             for i in range(1000)]  # fmt: skip
    template = conversation._template()
    renders = []

    class Counting:
        def render(self, **kw):
            renders.append(len(kw["turns"]))
            return template.render(**kw)

    def one_render_per_turn(limit):  # what the bisection must agree with
        for start in range(len(turns)):
            text = template.render(turns=turns[start:], question="Next?").strip()
            if len(text) <= limit:
                return text
        return "Next?"

    monkeypatch.setattr(conversation, "_template", lambda: Counting())
    for limit in (50, 2_000, 20_000, 10**6):
        renders.clear()
        assert compose(turns, "Next?", limit) == one_render_per_turn(limit)
        assert len(renders) <= 12  # a bisection over 1,000 turns, not a render per turn


def test_progress_lines_say_what_happened():
    assert describe({"type": "chain", "index": 0, "k": 4, "answer": "42"}) == "Chain 1/4 sampled: answer 42.\n"
    assert describe({"type": "chain", "index": 3, "k": 4, "answer": None}).endswith("no parsable answer.\n")
    hard = {"type": "route", "round": 0, "hard": True, "will_refine": True, "majority": "7",
            "orm_confidence": 0.31, "prm_confidence": 0.42}  # fmt: skip
    assert describe(hard) == ("Round 0: hard (ORM confidence 0.31, PRM confidence 0.42); "
                              "reviewing and refining every chain.\n")  # fmt: skip
    assert "easy" in describe({**hard, "hard": False})
    assert describe({"type": "review", "chain_index": 1, "round": 0, "low_steps": [2, 3]}) == \
        "Review of chain 2 (round 0): low-scoring steps 2, 3.\n"  # fmt: skip
    assert describe({"type": "feedback", "round": 1, "done": True}) == "Feedback on draft 1: judges it correct.\n"
    assert describe({"type": "something-new"}) is None


def test_failures_map_to_openai_statuses():
    import openai

    timeout = ModelError("the model server at http://x did not answer within 3 s (timed out)", transient=True)
    try:
        raise ModelError("the model server at http://x failed", transient=True) from openai.APITimeoutError(
            request=__import__("httpx").Request("POST", "http://x"))
    except ModelError as error:
        caused = error
    cases = [(InputError("the question is empty"), 400), (ModelError("answered HTTP 500"), 502), (timeout, 504),
             (caused, 504), (SetupError("pip install x"), 500), (RuntimeError("boom"), 500)]  # fmt: skip
    for error, status in cases:
        api = from_exception(error)
        assert api.status == status, (error, api.status)
        assert set(api.body()["error"]) == {"message", "type", "param", "code"}
    assert "boom" not in from_exception(RuntimeError("boom")).message  # internals stay in the log


def test_a_password_never_shows():
    assert redact("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact("postgresql://me@db/x") == "postgresql://me@db/x"


def test_conversations_append_and_read_back_in_memory():
    from langgraph.checkpoint.memory import InMemorySaver

    async def go():
        store = Conversations(InMemorySaver())
        await store.append("c1", [{"role": "user", "content": "a"}, {"role": "assistant", "content": "1"}])
        await store.append("c1", [{"role": "user", "content": "b"}])
        return await store.history("c1"), await store.history("c2")

    history, empty = asyncio.run(go())
    assert [m["content"] for m in history] == ["a", "1", "b"] and empty == []
