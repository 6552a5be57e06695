"""The lean request path of magicore's OpenAI-compatible model: the same request body and the
same completions and usage as LangChain's `agenerate` path, which still serves every call a
callback handler watches."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, convert_to_messages
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.runnables import RunnableLambda

from magicore.agents.backends import chat_model, parse_spec
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.tools import llm
from magicore.tools.usage import track_usage

URL = "http://127.0.0.1:9/v1"
MESSAGES = [("system", "Reason in numbered steps."), ("human", "What is 40 + 2?"),
            ("ai", "Step 1: 40 + 2 = 42"), ("human", "And 40 + 3?")]  # fmt: skip


def _model(**kwargs):
    return chat_model(parse_spec(f"vllm:mock@{URL}"), max_tokens=64, **kwargs)


@pytest.mark.parametrize("params", [
    {}, {"n": 4, "temperature": 0.8, "top_p": 0.95, "seed": 3},
    {"stop": ["\n\n"], "logprobs": True, "top_logprobs": 5, "max_tokens": 1},
])  # fmt: skip
def test_the_lean_body_is_the_one_langchain_builds(params):
    model = _model()
    expected = model._get_request_payload(convert_to_messages(MESSAGES), **params)
    expected.pop("stream", None)
    assert model.lean_payload(MESSAGES, **params) == expected
    as_objects = [SystemMessage("Reason in numbered steps."), HumanMessage("What is 40 + 2?"),
                  AIMessage("Step 1: 40 + 2 = 42"), HumanMessage("And 40 + 3?")]  # fmt: skip
    assert model.lean_payload(as_objects, **params) == expected


def test_what_the_lean_path_does_not_handle_goes_through_langchain():
    model = _model()
    assert model.lean_payload([HumanMessage("hi", name="ann")]) is None
    assert model.lean_payload([AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}])]) is None
    assert model.lean_payload([("tool", "42")]) is None
    assert model.lean_payload(MESSAGES, tools=[{"type": "function"}]) is None
    assert model.lean_payload(MESSAGES, stream=True) is None
    assert model.lean_payload(MESSAGES, response_format={"type": "json_object"}) is None
    limited = _model()
    limited.rate_limiter = InMemoryRateLimiter(requests_per_second=100)
    assert limited.lean_payload(MESSAGES) is None


class Watcher(AsyncCallbackHandler):
    def __init__(self):
        self.events: list[str] = []

    async def on_chat_model_start(self, serialized, messages, **kwargs):
        self.events.append("start")

    async def on_llm_end(self, response, **kwargs):
        self.events.append("end")


def test_a_watched_call_goes_through_langchain_and_an_unwatched_one_does_not(monkeypatch):
    async def main(server):
        model = chat_model(parse_spec(f"vllm:mock@{server.base_url}"), timeout=10)
        langchain_calls = []
        original = type(model).agenerate

        async def counting(self, *args, **kwargs):
            langchain_calls.append(1)
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(type(model), "agenerate", counting)

        async def call(_):
            with track_usage() as used:
                completions, usage = await llm.sample(model, MESSAGES, n=3)
            return completions, usage, used

        watcher = Watcher()
        lean = await RunnableLambda(call).ainvoke(None)
        assert not langchain_calls
        watched = await RunnableLambda(call).ainvoke(None, {"callbacks": [watcher]})
        assert langchain_calls == [1] and watcher.events == ["start", "end"]
        return lean, watched

    with MockServer(MockSettings()) as server:
        (lean_c, lean_u, lean_used), (watched_c, watched_u, watched_used) = asyncio.run(main(server))
    assert [(c.text, c.finish_reason) for c in lean_c] == [(c.text, c.finish_reason) for c in watched_c]
    assert lean_u == watched_u and lean_used == watched_used == lean_u
    assert lean_u.llm_calls == 3 and lean_u.requests == 1 and lean_u.output_tokens > 0


def test_handlers_on_the_model_or_from_langchain_contexts_also_see_the_call():
    from langchain_core.callbacks import get_usage_metadata_callback
    from langchain_core.tracers.context import collect_runs

    async def main(server):
        watcher = Watcher()
        on_model = chat_model(parse_spec(f"vllm:mock@{server.base_url}"), timeout=10)
        on_model.callbacks = [watcher]
        await llm.sample(on_model, MESSAGES)  # outside any run: the model's own handler is told
        assert watcher.events == ["start", "end"]
        plain = chat_model(parse_spec(f"vllm:mock@{server.base_url}"), timeout=10)
        with collect_runs() as runs:
            await llm.sample(plain, MESSAGES)
        assert len(runs.traced_runs) == 1
        with get_usage_metadata_callback() as usage:
            await llm.sample(plain, MESSAGES)
        assert sum(u["output_tokens"] for u in usage.usage_metadata.values()) > 0

    with MockServer(MockSettings()) as server:
        asyncio.run(main(server))


def test_both_paths_serve_one_model_from_successive_event_loops():
    """A model made once is used from one `asyncio.run` after another (a script, a test, a UI
    thread's loop): each loop gets its own connections, so a kept-alive connection of a
    finished loop is never reused (httpx fails it with "Event loop is closed")."""
    settings = MockSettings()
    with MockServer(settings) as server:
        model = chat_model(parse_spec(f"vllm:mock@{server.base_url}"), max_tokens=64)

        async def both() -> list[str]:
            streamed = "".join([chunk.content async for chunk in model.astream("What is 40 + 2?")])
            completions, _ = await llm.sample(model, [("user", "What is 40 + 2?")])
            return [streamed, completions[0].text]

        answers = [asyncio.run(both()) for _ in range(3)]
    assert len(settings.requests) == 6 and sum(bool(body.get("stream")) for body in settings.requests) == 3
    assert all(streamed.endswith("\\boxed{42}.") and lean.endswith("\\boxed{42}.") for streamed, lean in answers)


def test_a_users_own_chatopenai_serves_one_solve_after_another():
    """`magicore.solve` from plain synchronous code, three times with one ChatOpenAI that the
    user made (langchain-openai keeps its default HTTP client for the process): every call from
    the main thread runs on the one loop magicore keeps for it, so no call meets a connection of a
    finished loop."""
    import magicore
    from langchain_openai import ChatOpenAI

    from magicore.graphs.config import MethodConfig

    with MockServer(MockSettings()) as server:
        model = ChatOpenAI(model="mock-model", base_url=server.base_url, api_key="not-needed", max_retries=0)
        answers = [magicore.solve("What is 40 + 2?", model=model, method="sc", config=MethodConfig(k=2)).answer
                   for _ in range(3)]  # fmt: skip
    assert answers == ["42", "42", "42"]


def test_the_sdk_path_goes_through_the_proxy_the_environment_names(monkeypatch):
    """A streamed call (the openai SDK's path) to a server nobody listens on, with HTTP_PROXY
    naming a second server: the proxy gets the request (as an absolute URL) and answers; with
    the host in NO_PROXY the call goes direct and cannot connect."""
    import socket

    import openai

    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    proxied = MockSettings()
    with MockServer(proxied) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        model = chat_model(parse_spec(f"vllm:mock@{dead}"), max_tokens=64, max_retries=0, timeout=5)

        async def streamed() -> str:
            return "".join([chunk.content async for chunk in model.astream("What is 40 + 2?")])

        assert asyncio.run(streamed()).endswith("\\boxed{42}.") and len(proxied.requests) == 1
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with pytest.raises(openai.APIConnectionError):
            asyncio.run(streamed())
    assert len(proxied.requests) == 1
