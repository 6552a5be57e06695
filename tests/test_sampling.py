"""n-way sampling: one n=k request where honoured, bounded concurrent requests where not."""

import asyncio

import pytest
from langchain_core.messages import HumanMessage

from magicore.tools import llm
from magicore.agents.fake import ScriptedFakeChatModel
from magicore.agents.solver import Solver, SolverConfig
from magicore.tools.errors import ModelError

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


@pytest.fixture(autouse=True)
def _forget_detected_capabilities():
    llm._n_honoured.clear()
    yield
    llm._n_honoured.clear()


async def test_what_one_model_learnt_of_n_is_not_applied_to_another():
    """The verdict belongs to the model object: another one with the same class, URL and name
    (a new server on a reused port, another scripted model) finds out for itself."""
    ignores = ScriptedFakeChatModel(responses=["Step 1: 3+4=7\n\\boxed{7}"], honours_n=False)
    honours = ScriptedFakeChatModel(responses=["Step 1: 3+4=7\n\\boxed{7}"], honours_n=True)
    assert llm.model_key(ignores) == llm.model_key(honours)
    await llm.sample(ignores, [HumanMessage("q")], n=3)
    await llm.sample(honours, [HumanMessage("q")], n=3)
    assert (llm.n_support(ignores), llm.n_support(honours)) == (False, True)
    assert [r.get("n") for r in honours.requests] == [3]
    del ignores
    import gc

    gc.collect()
    assert len(llm._n_honoured._facts) == 1  # forgotten with its model


async def test_n_honoured_uses_one_request():
    model = ScriptedFakeChatModel(responses=["Step 1: 3+4=7\n\\boxed{7}"], honours_n=True, model="honours")
    completions, usage = await llm.sample(model, [HumanMessage("q")], n=5, temperature=0.8)
    assert len(completions) == 5
    assert len(model.requests) == 1 and model.requests[0]["n"] == 5
    assert model.requests[0]["temperature"] == 0.8
    assert usage.llm_calls == 5 and usage.requests == 1
    assert llm.n_support(model) is True


async def test_n_ignored_is_detected_and_filled_concurrently():
    model = ScriptedFakeChatModel(responses=["\\boxed{7}"], honours_n=False, delay=0.2, model="ignores")
    started = asyncio.get_running_loop().time()
    completions, usage = await llm.sample(model, [HumanMessage("q")], n=5, seed=10)
    elapsed = asyncio.get_running_loop().time() - started
    assert len(completions) == 5
    assert llm.n_support(model) is False
    # first request asked for n=5 and got 1; the other 4 went out as n=1 requests with distinct seeds
    assert [r.get("n") for r in model.requests] == [5, None, None, None, None]
    assert sorted(r["seed"] for r in model.requests[1:]) == [11, 12, 13, 14]
    assert usage.requests == 5 and usage.llm_calls == 5
    # bounded concurrency (8 for a model without a configured limit): the 4 ran at once, not in a row
    assert elapsed < 0.2 * 4

    model.requests.clear()
    await llm.sample(model, [HumanMessage("q")], n=3)
    assert [r.get("n") for r in model.requests] == [None, None, None]  # remembered: no n=3 try


async def test_concurrency_is_bounded_by_model_metadata():
    in_flight, peak = 0, 0

    def respond(_messages, _index):
        return "\\boxed{1}"

    class Counting(ScriptedFakeChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            return self._result(messages, kwargs)

    model = Counting(respond=respond, honours_n=False, model="bounded", metadata={"magicore_max_concurrency": 2})
    completions, _ = await llm.sample(model, [HumanMessage("q")], n=6)
    assert len(completions) == 6 and peak == 2


async def test_model_failure_becomes_model_error():
    model = ScriptedFakeChatModel(responses=[RuntimeError("boom")], model="broken")
    with pytest.raises(ModelError, match="boom"):
        await llm.sample(model, [HumanMessage("q")])


async def test_solver_parses_and_marks_unparsable_chains():
    replies = ["Step 1: 3 + 4 = 7\nThe answer is \\boxed{7}.", "I am not sure.", "Step 1: 3+4=8\n\\boxed{8}"]
    model = ScriptedFakeChatModel(responses=replies, model="solver-fake")
    seen = []
    result = await Solver(model, SolverConfig(k=3)).asolve(QUESTION, on_chain=seen.append)
    assert [c.answer for c in result.chains] == ["7", None, "8"]
    assert [c.parsed for c in result.chains] == [True, False, True]
    assert result.chains[0].steps == ["3 + 4 = 7\nThe answer is \\boxed{7}."]
    assert len(seen) == 3 and result.family == "word"
    sent = model.requests[0]
    assert sent["n"] == 3 and sent["temperature"] == 0.8 and sent["top_p"] == 0.95
    assert "Step 1:" in sent["messages"][0].content and QUESTION == sent["messages"][1].content


async def test_solver_uses_the_multiple_choice_prompt():
    question = "Which is prime?\n(A) 4\n(B) 6\n(C) 7\n(D) 9"
    model = ScriptedFakeChatModel(responses=["Step 1: 7 is prime.\nThe answer is \\boxed{C}."])
    result = await Solver(model, SolverConfig(k=1)).asolve(question)
    assert result.family == "mcq" and result.chains[0].answer == "C"
    assert "letter" in model.requests[0]["messages"][0].content


def test_finished_event_loops_do_not_keep_their_semaphores():
    import gc
    import weakref

    model = ScriptedFakeChatModel(responses=["\\boxed{7}"], honours_n=False, delay=0.01, model="per-loop",
                                  metadata={"magicore_max_concurrency": 2})  # fmt: skip
    loops = []

    async def contended():
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await llm.sample(model, [HumanMessage("q")], n=6)  # 6 requests, 2 at a time: they wait

    for _ in range(5):
        asyncio.run(contended())
    gc.collect()
    assert len(llm._limits) <= 1
    assert sum(ref() is not None for ref in loops) <= 1  # at most the last loop, until the next one
