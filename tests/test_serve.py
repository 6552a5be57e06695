"""`magicore serve` as a real server process, driven by the official `openai` client and by
LangChain's `ChatOpenAI`, in front of a real HTTP mock model server (evals/mock_server.py):
plain and streaming completions, 32 requests at once, every error class, a client that leaves
mid-stream, conversations kept across turns and restarts, and trace ids."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from magicore.evals.mock_server import DEFAULT_REPLY, MockServer, MockSettings
from magicore.evals.serve_process import QUESTION, ServeProcess, prompt_text, wait_for

pytestmark = pytest.mark.timeout(180)
REPLY_WORDS = len(DEFAULT_REPLY.split())


@pytest.fixture(scope="module")
def mock():
    with MockServer(MockSettings()) as server:
        yield server


@pytest.fixture
def model(mock):
    """The mock model server, reset to answering at once with the default solution."""
    s = mock.settings
    s.mode, s.latency, s.honour_n = "ok", 0.0, True
    s.clear()
    return mock


@pytest.fixture(scope="module")
def server(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    with ServeProcess("--model", f"mock-model@{mock.base_url}", "--reward", "verifier",
                      "--checkpoint", f"sqlite:{tmp / 'conversations.sqlite'}",
                      log=tmp / "stderr.log") as process:  # fmt: skip
        yield process
    assert "Traceback" not in process.stderr(), process.stderr()


def client(server, **kwargs) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)


def facts(response) -> dict:
    return response.model_extra["magicore"]


# Plain completions


def test_the_model_list_names_every_method_and_the_upstream_model(server):
    ids = [m.id for m in client(server).models.list().data]
    assert ids[:4] == ["magicore", "magicore-sc", "magicore-bok", "magicore-self-refine"]
    assert "magicore/mock-model" in ids and "magicore-sc/mock-model" in ids


def test_a_completion_answers_in_the_content_and_sums_every_calls_tokens(server, model):
    response = client(server).chat.completions.create(
        model="magicore-sc", messages=[{"role": "user", "content": QUESTION}], extra_body={"k": 3})
    assert response.object == "chat.completion" and response.model == "magicore-sc"
    assert response.choices[0].message.content == "42"
    assert response.choices[0].finish_reason == "stop"
    # the usage block is the sum over every request the method made to the model
    sent = model.settings.requests
    assert [r.get("n") for r in sent] == [3]
    assert response.usage.prompt_tokens == sum(len(prompt_text(r).split()) for r in sent)
    assert response.usage.completion_tokens == 3 * REPLY_WORDS
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    info = facts(response)
    assert info["method"] == "sc" and info["answer"] == "42" and info["votes"] == {"42": 3.0}
    assert info["llm_calls"] == 3 and info["requests"] == 1
    assert info["usage_by_role"]["solver"]["output_tokens"] == 3 * REPLY_WORDS
    assert info["conversation_id"].startswith("conv-") and info["trace_id"] is None  # tracing is off


def test_body_fields_tune_the_method(server, model):
    response = client(server).chat.completions.create(
        model="magicore", messages=[{"role": "user", "content": QUESTION}], temperature=0.3, seed=7,
        extra_body={"k": 4, "rounds": 1, "reward": "verifier"})
    info = facts(response)
    assert response.choices[0].message.content == "42"
    assert info["method"] == "magicore" and info["reward"] == "verifier"
    assert [d["hard"] for d in info["route"]] == [False]  # four equal answers: easy
    solve = model.settings.requests[0]
    assert (solve["n"], solve["temperature"], solve["seed"]) == (4, 0.3, 7)


def test_a_named_upstream_model_is_used_and_an_unknown_one_refused(server, model):
    c = client(server)
    response = c.chat.completions.create(model="magicore-sc/mock-model",
                                         messages=[{"role": "user", "content": QUESTION}], extra_body={"k": 1})
    assert response.choices[0].message.content == "42" and model.settings.requests[0]["model"] == "mock-model"
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model="magicore-sc/other-model", messages=[{"role": "user", "content": QUESTION}])
    assert "does not serve 'other-model'" in caught.value.message


def test_self_refine_answers_with_one_chain(server, model):
    response = client(server).chat.completions.create(
        model="magicore-self-refine", messages=[{"role": "user", "content": QUESTION}], extra_body={"rounds": 1})
    info = facts(response)
    assert response.choices[0].message.content == "42" and info["method"] == "self-refine"
    assert info["rounds"] == 1 and all(r.get("n", 1) == 1 for r in model.settings.requests)


# Streaming


def test_streaming_sends_progress_as_reasoning_then_the_answer_then_usage(server, model):
    stream = client(server).chat.completions.create(
        model="magicore-sc", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True}, extra_body={"k": 3})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)  # fmt: skip
    assert "Chain 1/3 sampled: answer 42." in reasoning and "Chain 3/3 sampled" in reasoning
    assert "Final vote (42: 3): answer 42." in reasoning
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "42"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert finals[0].model_extra["magicore"]["votes"] == {"42": 3.0}
    # the last chunk carries the usage, summed over the method's calls, and no choice
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3 * REPLY_WORDS
    assert len({c.id for c in chunks}) == 1


def test_the_stream_ends_with_done_on_the_wire(server, model):
    body = {"model": "magicore-sc", "messages": [{"role": "user", "content": QUESTION}], "stream": True, "k": 2}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert all(json.loads(line.removeprefix("data: "))["object"] == "chat.completion.chunk" for line in lines[:-1])


def test_langchain_chat_openai_plain_and_streaming(server, model):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="magicore-sc", base_url=server.base_url, api_key="unused", max_retries=0,
                     extra_body={"k": 2}, stream_usage=True)  # fmt: skip
    message = llm.invoke(QUESTION)
    assert message.content == "42"
    assert message.usage_metadata["output_tokens"] == 2 * REPLY_WORDS
    pieces = list(llm.stream(QUESTION))
    assert "".join(p.content for p in pieces) == "42"
    total = pieces[0]
    for piece in pieces[1:]:
        total += piece
    assert total.usage_metadata["output_tokens"] == 2 * REPLY_WORDS


# Many at once


async def test_32_requests_at_once_all_succeed_and_run_together(server, model):
    model.settings.latency = 0.5
    async with AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120) as c:
        async def ask(i: int):
            return await c.chat.completions.create(
                model="magicore-sc", messages=[{"role": "user", "content": f"{QUESTION} ({i})"}],
                extra_body={"k": 2})

        started = time.perf_counter()
        responses = await asyncio.gather(*(ask(i) for i in range(32)))
        wall = time.perf_counter() - started
    assert [r.choices[0].message.content for r in responses] == ["42"] * 32
    assert len({facts(r)["conversation_id"] for r in responses}) == 32
    assert len(model.settings.requests) == 32
    # one after another they would take 32 x 0.5 s; together, about one model call's time
    assert wall < 8.0, wall
    assert server.health()["runs"] == {"active": 0, "limit": 32}


async def test_langchain_chat_openai_32_at_once_and_its_errors(server, model):
    from langchain_openai import ChatOpenAI

    model.settings.latency = 0.5
    llm = ChatOpenAI(model="magicore-sc", base_url=server.base_url, api_key="unused", max_retries=0,
                     extra_body={"k": 1})  # fmt: skip
    started = time.perf_counter()
    answers = await llm.abatch([f"{QUESTION} ({i})" for i in range(32)], config={"max_concurrency": 32})
    assert [a.content for a in answers] == ["42"] * 32 and len(model.settings.requests) == 32
    assert time.perf_counter() - started < 8.0
    with pytest.raises(openai.BadRequestError) as caught:
        await ChatOpenAI(model="magicore", base_url=server.base_url, api_key="unused", max_retries=0,
                         extra_body={"k": 99}).ainvoke(QUESTION)  # fmt: skip
    assert "k is 99" in caught.value.message


# Errors


def raw(server, body, headers=None):
    return httpx.post(server.base_url + "/chat/completions", content=body if isinstance(body, bytes) else None,
                      json=None if isinstance(body, bytes) else body, headers=headers, timeout=60)  # fmt: skip


@pytest.mark.parametrize("body, status, message, param", [
    (b"{not json", 400, "the request body is not valid JSON", None),
    (b"[1, 2]", 400, "must be a JSON object", None),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "'model' is required", "model"),
    ({"model": "magicore", "messages": []}, 400, "'messages' should have at least 1 item", "messages"),
    ({"model": "magicore", "messages": [{"role": "robot", "content": "hi"}]}, 400, "'messages.0.role'", "messages"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 400, "unknown model 'gpt-4'", "model"),
    ({"model": "magicore", "messages": [{"role": "user", "content": "hi"}], "k": 64}, 400,
     "k is 64; this server samples at most 16 chains", "k"),
    ({"model": "magicore", "messages": [{"role": "user", "content": "hi"}], "k": "many"}, 400,
     "'k' should be a valid integer", "k"),
    ({"model": "magicore", "messages": [{"role": "user", "content": "hi"}], "rounds": 9}, 400,
     "rounds is 9; this server runs at most 5 rounds", "rounds"),
    ({"model": "magicore", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "'n'", "n"),
    ({"model": "magicore", "messages": [{"role": "user", "content": "hi"}], "reward": "vllm:rm@http://evil:1"},
     400, "names a model or server", "reward"),
    ({"model": "magicore-sc", "messages": [{"role": "user", "content": "hi"}], "reward": "verifier"}, 400,
     "does not score chains", "reward"),
    ({"model": "magicore", "messages": [{"role": "user", "content": "   "}]}, 400, "The question is empty", None),
    ({"model": "magicore", "messages": [{"role": "user", "content": ""}], "stream": True}, 400,
     "The question is empty", None),
    ({"model": "magicore", "messages": [{"role": "user", "content": "x" * 20_001}]}, 400,
     "the limit is 20,000", None),
    ({"model": "magicore", "messages": [{"role": "assistant", "content": "hi"}]}, 400,
     "the last message must be the user's question", "messages"),
    ({"model": "magicore", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "only text content is understood", "messages"),
])  # fmt: skip
def test_a_bad_request_gets_400_with_one_sentence(server, model, body, status, message, param):
    response = raw(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"], error
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert "\n" not in error["message"] and "Traceback" not in response.text
    assert model.settings.requests == []  # refused before any model call


def test_a_body_over_the_limit_gets_413_and_an_unknown_path_404(server):
    response = raw(server, b'{"model": "magicore", "messages": [' + b" " * (1 << 20) + b"]}")
    assert response.status_code == 413 and "larger than this server's limit" in response.json()["error"]["message"]
    missing = httpx.get(server.root + "/v2/anything", timeout=10)
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["error"]["message"]


def test_the_worker_keeps_serving_after_bad_requests(server, model):
    for body in (b"\xff\xfe", b'{"model": 1}', b"{}"):
        assert raw(server, body).status_code == 400
    assert client(server).chat.completions.create(
        model="magicore-sc", messages=[{"role": "user", "content": QUESTION}]).choices[0].message.content == "42"


def test_the_upstream_models_failure_is_502(server, model):
    model.settings.mode = "error500"
    with pytest.raises(openai.InternalServerError) as caught:
        client(server).chat.completions.create(model="magicore-sc", messages=[{"role": "user", "content": QUESTION}],
                                               extra_body={"k": 1})  # fmt: skip
    assert caught.value.status_code == 502
    assert "answered HTTP 500" in caught.value.message and "model crashed" in caught.value.message


def test_a_failure_mid_stream_is_an_error_event(server, model):
    model.settings.mode = "error500"
    stream = client(server).chat.completions.create(
        model="magicore-sc", messages=[{"role": "user", "content": QUESTION}], stream=True, extra_body={"k": 1})
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert "answered HTTP 500" in caught.value.message


def test_a_full_server_gets_429_with_retry_after(mock, model, tmp_path):
    model.settings.latency = 2.0
    with ServeProcess("--model", f"mock-model@{mock.base_url}", "--checkpoint", "memory", "--max-runs", "1",
                      log=tmp_path / "stderr.log") as busy:  # fmt: skip
        results = []
        first = threading.Thread(target=lambda: results.append(client(busy).chat.completions.create(
            model="magicore-sc", messages=[{"role": "user", "content": QUESTION}], extra_body={"k": 1})))
        first.start()
        assert wait_for(lambda: busy.health()["runs"]["active"] == 1, 20)
        with pytest.raises(openai.RateLimitError) as caught:
            client(busy).chat.completions.create(model="magicore-sc", messages=[{"role": "user", "content": QUESTION}])
        first.join(60)
        assert results and results[0].choices[0].message.content == "42"
        # the next request, with the slot free again, runs
        assert client(busy).chat.completions.create(
            model="magicore-sc", messages=[{"role": "user", "content": QUESTION}],
            extra_body={"k": 1}).choices[0].message.content == "42"
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"].isdigit()
    assert "busy with 1 run, its limit" in caught.value.message
    assert "Traceback" not in busy.stderr()


def test_the_upstream_models_timeout_is_504(mock, model, tmp_path):
    model.settings.mode = "hang"
    with ServeProcess("--model", f"mock-model@{mock.base_url}", "--checkpoint", "memory", "--timeout", "0.3",
                      log=tmp_path / "stderr.log") as slow:  # fmt: skip
        with pytest.raises(openai.APIStatusError) as caught:
            client(slow, timeout=60).chat.completions.create(
                model="magicore-sc", messages=[{"role": "user", "content": QUESTION}], extra_body={"k": 1})
    assert caught.value.status_code == 504
    assert "did not answer within the 0.3 s timeout" in caught.value.message
    assert "Traceback" not in slow.stderr()


def test_an_upstream_429_reaches_the_client_as_429_with_its_retry_after(mock, model, tmp_path):
    model.settings.mode, model.settings.retry_after = "rate_limited", 30
    with ServeProcess("--model", f"mock-model@{mock.base_url}", "--checkpoint", "memory", "--timeout", "5",
                      log=tmp_path / "stderr.log") as relay:  # fmt: skip
        with pytest.raises(openai.RateLimitError) as caught:
            client(relay).chat.completions.create(
                model="magicore-sc", messages=[{"role": "user", "content": QUESTION}], extra_body={"k": 1})
    assert caught.value.status_code == 429  # not 502: the upstream is busy, not broken
    assert caught.value.response.headers["retry-after"] == "30"
    assert caught.value.code == "upstream_busy"
    assert "answered HTTP 429 and asked to retry after 30 s" in caught.value.message
    assert "Traceback" not in relay.stderr()


def test_a_key_is_required_when_set(mock, model, tmp_path):
    with ServeProcess("--model", f"mock-model@{mock.base_url}", "--checkpoint", "memory",
                      env={"MAGICORE_SERVE_API_KEY": "s3cret"}, log=tmp_path / "stderr.log") as locked:  # fmt: skip
        assert "API key required" in locked.banner
        ask = {"model": "magicore-sc", "messages": [{"role": "user", "content": QUESTION}], "k": 1}
        missing = httpx.post(locked.base_url + "/chat/completions", json=ask, timeout=30)
        with pytest.raises(openai.AuthenticationError) as wrong:
            client(locked, api_key="guess").chat.completions.create(model="magicore-sc", messages=ask["messages"])
        with pytest.raises(openai.AuthenticationError):
            client(locked, api_key="guess").models.list()
        ok = client(locked, api_key="s3cret").chat.completions.create(
            model="magicore-sc", messages=ask["messages"], extra_body={"k": 1})
        assert locked.health()["status"] == "ok"  # health needs no key
    assert missing.status_code == 401 and "needs an API key" in missing.json()["error"]["message"]
    assert wrong.value.status_code == 401 and "not valid" in wrong.value.message
    assert ok.choices[0].message.content == "42"
    assert len(model.settings.requests) == 1  # only the request with the key reached the model


def test_start_up_problems_are_one_line(mock, tmp_path):
    import socket
    import subprocess
    import sys

    def serve(*args):
        return subprocess.run([sys.executable, "-m", "magicore.ui.cli", "serve", "--checkpoint", "memory",
                               "--model", f"mock-model@{mock.base_url}", *args],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # exit code 1: the machine's state; 2: what the command line asked for (usage errors)
        cases = [(("--port", str(taken.getsockname()[1])), "cannot listen on 127.0.0.1:", 1),
                 (("-k", "20"), "-k 20 is more than --max-k 16", 2),
                 (("--max-question-chars", "50000"), "--max-question-chars is at most 20000", 2),
                 (("--reward", "bogus"), "bogus", 2),
                 (("--checkpoint", str(tmp_path / "a-file" / "x.sqlite")), None, 2)]  # fmt: skip
        (tmp_path / "a-file").write_text("not a directory")
        for args, fragment, code in cases:
            proc = serve(*args)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert proc.returncode == code and len(lines) == 1, (args, proc.stderr)
            assert lines[0].startswith("magicore: error: ") and (fragment is None or fragment in lines[0]), lines


# A client that goes away


def test_a_client_leaving_mid_stream_cancels_the_run(server, model):
    model.settings.latency = 1.0  # self-refine, 4 rounds: 9 sequential calls, about 9 s
    body = {"model": "magicore-self-refine", "messages": [{"role": "user", "content": QUESTION}], "stream": True,
            "rounds": 4}  # fmt: skip
    with httpx.Client(timeout=60) as http, http.stream("POST", server.base_url + "/chat/completions",
                                                       json=body) as response:  # fmt: skip
        for line in response.iter_lines():
            if "reasoning_content" in line:  # the first draft is written: one call made
                break
        assert server.health()["runs"]["active"] == 1
    left = time.monotonic()
    assert wait_for(lambda: server.health()["runs"]["active"] == 0, 3.0)
    assert time.monotonic() - left < 3.0
    assert_no_model_call_after_the_cancel(model)


def assert_no_model_call_after_the_cancel(model) -> None:
    """Only the draft was answered: the call in flight at the cancel (the feedback) was dropped,
    and none was made after it. The feedback's request can reach the model server after the run
    is reported ended on a busy machine, so its arrival is no evidence; its reply finding nobody
    to read it is. A run that went on would have its next call answered within the model's
    latency (at most 2 s here)."""
    s = model.settings
    time.sleep(2.5)
    assert wait_for(lambda: s.in_flight == 0, 5.0)
    assert s.answered == ["/v1/chat/completions"] and len(s.requests) <= 2, (s.answered, len(s.requests))


def test_a_client_leaving_a_plain_request_cancels_the_run(server, model):
    model.settings.latency = 2.0  # the client leaves a second after the draft, a second before the feedback
    body = {"model": "magicore-self-refine", "messages": [{"role": "user", "content": QUESTION}], "rounds": 4}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base_url + "/chat/completions", json=body, timeout=3.0)
    assert wait_for(lambda: server.health()["runs"]["active"] == 0, 3.0)
    assert_no_model_call_after_the_cancel(model)


# Conversations and tracing


def test_a_conversation_keeps_its_history_across_turns_and_restarts(mock, model, tmp_path):
    store = f"sqlite:{tmp_path / 'conversations.sqlite'}"
    args = ("--model", f"mock-model@{mock.base_url}", "--checkpoint", store)
    with ServeProcess(*args, log=tmp_path / "a.log") as first:
        opened = client(first).chat.completions.create(
            model="magicore-sc", messages=[{"role": "user", "content": "What is 40 + 2?"}], extra_body={"k": 1})
    cid = facts(opened)["conversation_id"]
    with ServeProcess(*args, log=tmp_path / "b.log") as second:  # a new process on the same store
        model.settings.requests.clear()
        client(second).chat.completions.create(
            model="magicore-sc", messages=[{"role": "user", "content": "And doubled?"}],
            extra_body={"k": 1, "conversation_id": cid})
        prompt = prompt_text(model.settings.requests[0])
        assert "Earlier in this conversation" in prompt
        assert "User: What is 40 + 2?" in prompt and "Assistant: 42" in prompt
        assert "New question: And doubled?" in prompt
        # a third turn sees both earlier ones, and the request's own earlier messages are not used
        model.settings.requests.clear()
        third = client(second).chat.completions.create(
            model="magicore-sc", extra_body={"k": 1, "conversation_id": cid},
            messages=[{"role": "user", "content": "ignored"}, {"role": "assistant", "content": "ignored too"},
                      {"role": "user", "content": "And halved?"}])  # fmt: skip
        prompt = prompt_text(model.settings.requests[0])
    assert facts(third)["conversation_id"] == cid
    assert prompt.count("User: ") == 2 and "User: And doubled?" in prompt and "ignored" not in prompt


def test_a_request_without_a_conversation_uses_its_own_earlier_messages(server, model):
    response = client(server).chat.completions.create(
        model="magicore-sc", extra_body={"k": 1, "store": False},
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 40 + 2?"},
                  {"role": "assistant", "content": "42"}, {"role": "user", "content": "And doubled?"}])  # fmt: skip
    prompt = prompt_text(model.settings.requests[0])
    assert "User: What is 40 + 2?" in prompt and "Assistant: 42" in prompt and "Be brief." not in prompt
    assert facts(response)["conversation_id"] is None  # store: false keeps nothing


def test_traces_carry_the_conversation_as_session_and_the_client_gets_the_trace_id(mock, model, tmp_path):
    spans = tmp_path / "spans.jsonl"
    with ServeProcess("--model", f"mock-model@{mock.base_url}", "--checkpoint", "memory",
                      "--trace", f"jsonl:{spans}", log=tmp_path / "stderr.log") as traced:  # fmt: skip
        response = client(traced).chat.completions.create(
            model="magicore-sc", messages=[{"role": "user", "content": QUESTION}],
            extra_body={"k": 2, "conversation_id": "chat-7"})
        info = facts(response)
        assert wait_for(lambda: spans.exists() and "invoke_workflow" in spans.read_text(), 10)
    records = [json.loads(line) for line in spans.read_text().splitlines()]
    trace = [s for s in records if s["context"]["trace_id"] == "0x" + info["trace_id"]]
    assert {s["name"] for s in trace} >= {"invoke_workflow sc", "invoke_agent solver"}
    assert all(s["attributes"]["session.id"] == "chat-7" for s in trace)


def test_replies_on_a_kept_alive_connection_do_not_wait_for_delayed_acks(server):
    # with Nagle's algorithm on the server's sockets, each reply waited ~40 ms for the client's ACK
    with httpx.Client(timeout=10) as http:
        http.get(server.root + "/health")
        times = []
        for _ in range(21):
            started = time.perf_counter()
            http.get(server.root + "/health")
            times.append(time.perf_counter() - started)
    assert sorted(times)[10] < 0.025, times
