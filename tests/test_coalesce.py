"""Concurrent chat completions to a vLLM server go out as one POST /v1/chat/completions/batch
(agents/coalesce.py), against a real HTTP server that serves the endpoint as vLLM does: every
caller gets its own answer and its share of the usage, and a server without the endpoint, one
that refuses a conversation, or one that fails, costs no call its answer or its error."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.graph import START, StateGraph

from magicore.agents.backends import chat_model, parse_spec
from magicore.agents import coalesce
from magicore.agents.coalesce import coalescer, run_scope, split_reply
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.tools import llm
from magicore.tools.errors import InputError, ModelError
from magicore.tools.usage import track_usage


def echo(body: dict, _index: int) -> str:
    """The reply names the question it answers, so a reply given to the wrong caller shows."""
    return f"Answer to: {body['messages'][-1]['content']}"


def _model(server: MockServer, **kwargs):
    return chat_model(parse_spec(f"vllm:mock-model@{server.base_url}"), **{"max_retries": 0, **kwargs})


def _paths(settings: MockSettings) -> list[int]:
    """Conversations per request the server received: a batch's size, or 0 for a single call."""
    return [len(body["messages"]) if isinstance(body["messages"][0], list) else 0 for body in settings.requests]


async def _ask(model, questions, **params):
    """The questions asked at once, as one run's calls (calls outside any run are sent alone)."""
    with run_scope():
        return await asyncio.gather(*(llm.sample(model, [("user", q)], **params) for q in questions),
                                    return_exceptions=True)  # fmt: skip


def _start(model, questions) -> list[asyncio.Task]:
    """The questions' calls started as one run's, left running."""
    with run_scope():
        return [asyncio.ensure_future(llm.sample(model, [("user", q)])) for q in questions]


def test_concurrent_calls_go_out_as_one_batch_and_each_gets_its_own_answer():
    settings = MockSettings(latency=0.05, reply=echo)
    questions = [f"question {i} " + "word " * i for i in range(20)]
    with MockServer(settings) as server:
        model = _model(server)
        assert model.coalesce  # on by default for a vllm: spec
        results = asyncio.run(_ask(model, questions, max_tokens=32))
    assert _paths(settings) == [20]
    for question, (completions, usage) in zip(questions, results, strict=True):
        assert [c.text for c in completions] == [f"Answer to: {question}"]
        assert usage.requests == 1 and usage.llm_calls == 1
    # the server reports the batch's usage; each call carries its share, and the shares add up
    prompt = sum(len(q.split()) for q in questions)
    assert sum(usage.input_tokens for _, usage in results) == prompt
    assert sum(usage.output_tokens for _, usage in results) == sum(len(echo({"messages": [{"content": q}]}, 0).split())
                                                                   for q in questions)  # fmt: skip
    shares = [usage.input_tokens for _, usage in results]
    assert shares[-1] > shares[0]  # longer prompts carry more of it


def test_calls_with_different_parameters_are_batched_apart_and_a_lone_call_is_sent_as_it_is():
    settings = MockSettings(reply=echo)
    with MockServer(settings) as server:
        model = _model(server)

        async def run():
            await asyncio.gather(_ask(model, ["a", "b", "c"], max_tokens=16), _ask(model, ["d", "e"], max_tokens=8))
            return await _ask(model, ["alone"], max_tokens=16)

        (alone,) = asyncio.run(run())
    assert sorted(_paths(settings)) == [0, 2, 3]
    assert _paths(settings)[-1] == 0 and settings.requests[-1]["messages"] == [{"role": "user", "content": "alone"}]
    assert alone[0][0].text == "Answer to: alone"
    by_size = {len(b["messages"]): b["max_tokens"] for b in settings.requests if isinstance(b["messages"][0], list)}
    assert by_size == {3: 16, 2: 8}


def test_calls_asking_for_several_choices_are_sent_alone():
    settings = MockSettings(reply=echo)
    with MockServer(settings) as server:
        results = asyncio.run(_ask(_model(server), ["x", "y", "z"], n=4, temperature=0.8))
    assert _paths(settings) == [0, 0, 0]  # vLLM's batch endpoint takes n = 1 only
    for question, (completions, usage) in zip("xyz", results, strict=True):
        assert [c.text for c in completions] == [f"Answer to: {question}"] * 4
        assert usage.llm_calls == 4


def test_a_server_without_the_batch_endpoint_answers_every_call_and_is_not_asked_again():
    settings = MockSettings(reply=echo, batch_endpoint=False)
    with MockServer(settings) as server:
        model = _model(server)

        async def run():
            first = await _ask(model, ["a", "b", "c"])
            second = await _ask(model, ["d", "e"])
            return first, second, (await coalescer(model)).supported

        first, second, supported = asyncio.run(run())
    assert [r[0][0].text for r in first + second] == [f"Answer to: {q}" for q in "abcde"]
    assert not supported
    # the refused batch (a 404, which the mock does not record), then every call on its own
    assert _paths(settings) == [0, 0, 0, 0, 0]


def test_a_server_answering_404_or_501_for_the_batch_endpoint_is_asked_once():
    for status in (404, 501):
        settings = MockSettings(reply=echo, batch_status=status)
        with MockServer(settings) as server:
            model = _model(server, max_retries=1)

            async def run():
                return await _ask(model, ["a", "b", "c"]) + await _ask(model, ["d", "e"])

            results = asyncio.run(run())
        assert [r[0][0].text for r in results] == [f"Answer to: {q}" for q in "abcde"]
        tries = [3] if status == 404 else [3, 3]  # a 5xx is retried (the openai SDK's rule)
        assert _paths(settings) == [*tries, 0, 0, 0, 0, 0], status  # then every call alone


def test_a_batch_the_server_fails_is_sent_again_call_by_call():
    settings = MockSettings(reply=echo, batch_status=500)
    with MockServer(settings) as server:
        results = asyncio.run(_ask(_model(server, max_retries=1), ["a", "b", "c"]))
    assert [r[0][0].text for r in results] == ["Answer to: a", "Answer to: b", "Answer to: c"]
    assert _paths(settings) == [3, 3, 0, 0, 0]  # the batch and its retry, then each call alone


def test_a_timed_out_batch_fails_each_call_with_its_own_error():
    settings = MockSettings(mode="hang")
    with MockServer(settings) as server:
        results = asyncio.run(_ask(_model(server, timeout=0.5), ["a", "b", "c"]))
    assert all(isinstance(r, ModelError) and "did not answer within" in str(r) for r in results)
    assert len({id(r.__cause__ or r) for r in results}) == 3  # LangGraph notes each branch's error
    assert _paths(settings) == [3]


def test_a_batch_is_at_most_max_batch_calls(monkeypatch):
    monkeypatch.setattr(coalesce, "MAX_BATCH", 3)
    settings = MockSettings(reply=echo)
    with MockServer(settings) as server:
        results = asyncio.run(_ask(_model(server), list("abcdefg")))
    assert [r[0][0].text for r in results] == [f"Answer to: {q}" for q in "abcdefg"]
    assert sorted(_paths(settings)) == [0, 3, 3]


def test_calls_are_batched_only_with_calls_counted_with_them():
    settings = MockSettings(reply=echo)
    with MockServer(settings) as server:
        model = _model(server)

        async def counted_apart():
            async def scope_of(questions):
                with track_usage():
                    return await asyncio.gather(*(llm.sample(model, [("user", q)]) for q in questions))

            with run_scope():
                await asyncio.gather(scope_of(["a", "b"]), scope_of(["c", "d"]))  # two usage scopes
            await asyncio.gather(_ask(model, ["e", "f"]), _ask(model, ["g", "h"]))  # two runs
            await asyncio.gather(*(llm.sample(model, [("user", q)]) for q in "ij"))  # no run: alone

        asyncio.run(counted_apart())
    assert _paths(settings) == [2, 2, 2, 2, 0, 0]


class ThreadState(TypedDict):
    texts: Annotated[list, operator.add]


def test_a_langgraph_thread_is_a_run_and_its_nodes_are_batched_apart():
    settings = MockSettings(reply=echo)

    with MockServer(settings) as server:
        model = _model(server)

        def node(name):
            async def ask(state: ThreadState) -> dict:
                got = await asyncio.gather(*(llm.sample(model, [("user", f"{name}{i}")]) for i in range(2)))
                return {"texts": [c[0].text for c, _ in got]}
            return ask

        builder = StateGraph(ThreadState)
        builder.add_node("x", node("x"))
        builder.add_node("y", node("y"))
        builder.add_edge(START, "x")
        builder.add_edge(START, "y")  # x and y run in the same step
        graph = builder.compile()

        async def run():
            return await asyncio.gather(*(graph.ainvoke({"texts": []}, {"configurable": {"thread_id": t}})
                                          for t in ("one", "two")))  # fmt: skip

        finals = asyncio.run(run())
    assert all(sorted(f["texts"]) == ["Answer to: x0", "Answer to: x1", "Answer to: y0", "Answer to: y1"]
               for f in finals)  # fmt: skip
    assert _paths(settings) == [2, 2, 2, 2]  # per thread, per node


def test_a_batch_refused_for_one_conversation_fails_only_that_call():
    settings = MockSettings(reply=echo, reject_prompt_over=5)
    long_question = "far " * 50
    with MockServer(settings) as server:
        model = _model(server)
        results = asyncio.run(_ask(model, ["short one", long_question, "short two"]))

        async def still_batching():
            return (await coalescer(model)).supported

        assert asyncio.run(still_batching())  # a refused batch does not turn batching off
    assert results[0][0][0].text == "Answer to: short one"
    assert results[2][0][0].text == "Answer to: short two"
    assert isinstance(results[1], ModelError) and "HTTP 400" in str(results[1])
    assert "longer than the model's context" in str(results[1])
    assert _paths(settings)[0] == 3 and sorted(_paths(settings)[1:]) == [0, 0, 0]


def test_a_failing_server_fails_every_call_after_trying_each_alone():
    settings = MockSettings(mode="error500")
    with MockServer(settings) as server:
        results = asyncio.run(_ask(_model(server), ["a", "b", "c", "d"]))
    assert all(isinstance(r, ModelError) and "HTTP 500" in str(r) and "model crashed" in str(r) for r in results)
    assert _paths(settings) == [4, 0, 0, 0, 0]  # the batch, then each call once (max_retries=0)


def test_a_cancelled_call_leaves_the_others_of_its_batch_answered():
    settings = MockSettings(latency=0.2, reply=echo)
    with MockServer(settings) as server:
        model = _model(server)

        async def run():
            tasks = _start(model, "abc")
            await asyncio.sleep(0.05)  # the batch is on its way
            tasks[1].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(run())
    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[0][0][0].text, results[2][0][0].text] == ["Answer to: a", "Answer to: c"]


def test_parameters_the_batch_endpoint_refuses_are_sent_alone_from_then_on():
    settings = MockSettings(reply=echo, batch_refuses=("logprobs",))
    with MockServer(settings) as server:
        model = _model(server)

        async def run():
            first = await _ask(model, ["a", "b"], logprobs=True)
            second = await _ask(model, ["c", "d"], logprobs=True)
            plain = await _ask(model, ["e", "f"])
            return first + second + plain

        results = asyncio.run(run())
    assert [r[0][0].text for r in results] == [f"Answer to: {q}" for q in "abcdef"]
    # the refused batch (recorded), its two calls alone, the next two alone, then a batch again
    assert _paths(settings) == [2, 0, 0, 0, 0, 2]


def test_a_batch_whose_calls_are_all_cancelled_stops_its_request():
    settings = MockSettings(latency=5.0, reply=echo)
    with MockServer(settings) as server:
        model = _model(server)

        async def run():
            tasks = _start(model, "abc")
            await asyncio.sleep(0.2)  # the batch is on its way
            coalescing = await coalescer(model)
            assert len(coalescing._tasks) == 1
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.1)
            return len(coalescing._tasks)  # counted now: asyncio.run cancels what is left when it ends

        assert asyncio.run(run()) == 0  # its request was stopped, not left to be answered 5 s later
    assert _paths(settings) == [3]


class Watcher(AsyncCallbackHandler):
    def __init__(self):
        self.starts = 0

    async def on_chat_model_start(self, serialized, messages, **kwargs):
        self.starts += 1


def test_calls_a_callback_handler_watches_are_batched_too_and_each_is_seen():
    settings = MockSettings(reply=echo)
    watcher = Watcher()
    with MockServer(settings) as server:
        model = _model(server)
        model.callbacks = [watcher]  # LangChain's agenerate path
        results = asyncio.run(_ask(model, ["a", "b", "c"]))
    assert [r[0][0].text for r in results] == ["Answer to: a", "Answer to: b", "Answer to: c"]
    assert watcher.starts == 3
    assert _paths(settings) == [3]


def test_which_servers_batch(monkeypatch):
    url = "http://127.0.0.1:9/v1"
    assert chat_model(parse_spec(f"vllm:m@{url}")).coalesce
    assert not chat_model(parse_spec(f"llamacpp:m@{url}")).coalesce  # no batch endpoint there
    assert not chat_model(parse_spec(f"vllm:m@{url}"), coalesce=False).coalesce
    monkeypatch.setenv("MAGICORE_COALESCE", "0")
    assert not chat_model(parse_spec(f"vllm:m@{url}")).coalesce
    monkeypatch.setenv("MAGICORE_COALESCE", "1")
    assert chat_model(parse_spec(f"sglang:m@{url}")).coalesce
    monkeypatch.setenv("MAGICORE_COALESCE", "maybe")
    with pytest.raises(InputError, match="MAGICORE_COALESCE must be 1 or 0"):
        chat_model(parse_spec(f"vllm:m@{url}"))


def test_a_batch_reply_that_does_not_fit_its_conversations_is_an_error():
    conversations = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    with pytest.raises(ModelError, match="conversation 2 of 2"):
        split_reply({"choices": [{"index": 2, "message": {"content": "x"}}]}, conversations)
    with pytest.raises(ModelError, match="without `choices`"):
        split_reply({"usage": {}}, conversations)
    # a conversation the server gave no choice gets a reply without choices, which its call
    # reports as "no choices" (agents/transport.py)
    parts = split_reply({"choices": [{"index": 0, "message": {"content": "x"}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}}, conversations)  # fmt: skip
    assert [len(p["choices"]) for p in parts] == [1, 0]
    assert sum(p["usage"]["prompt_tokens"] for p in parts) == 3
    assert [p["usage"]["completion_tokens"] for p in parts] == [1, 0]
