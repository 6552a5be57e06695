"""One model on several servers (agents/replicas.py): specs with several URLs, least-busy
routing under the per-server bound, a replica killed mid-run, and its probe before reuse.
The replicas are real HTTP servers: mock_server processes, killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from aiohttp import web

from magicore.agents.backends import ModelSpec, chat_model, parse_spec
from magicore.agents.replicas import pool_for
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.tools.errors import InputError, ModelError
from magicore.tools.llm import sample

QUESTION = [("user", "What is 40 + 2?")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """A mock server in its own process, so that it can die as a server does (SIGKILL)."""

    def __init__(self, latency: float):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc = subprocess.Popen([sys.executable, "-m", "magicore.evals.mock_server", "--port", str(self.port),
                                      "--latency", str(latency)], stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=1).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the mock replica did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def replicas(request):
    started: list[Replica] = []

    def start(count: int, latency: float) -> list[Replica]:
        started.extend(Replica(latency) for _ in range(count))
        return started[-count:]

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.kill()


def model_over(replicas, bound: int, **kw):
    spec = "vllm:mock-model@" + ",".join(r.url for r in replicas)
    return chat_model(parse_spec(spec), max_concurrency=bound, **kw)


def test_a_spec_may_list_several_servers_of_one_model():
    spec = parse_spec("vllm:Qwen/Qwen2.5-7B-Instruct@http://a:8000/v1,http://b:8000/v1/")
    assert spec == ModelSpec("vllm", "Qwen/Qwen2.5-7B-Instruct", "http://a:8000/v1",
                             replicas=("http://a:8000/v1", "http://b:8000/v1"))  # fmt: skip
    assert spec.urls == ("http://a:8000/v1", "http://b:8000/v1")
    assert str(spec) == "vllm:Qwen/Qwen2.5-7B-Instruct@http://a:8000/v1,http://b:8000/v1"
    assert parse_spec(str(spec)) == spec
    assert parse_spec("http://a:1/v1,http://b:2/v1").replicas == ("http://a:1/v1", "http://b:2/v1")
    assert parse_spec("m@http://a:1/v1").replicas == () and parse_spec("m@http://a:1/v1").urls == ("http://a:1/v1",)


@pytest.mark.parametrize(("spec", "message"), [
    ("m@http://a:1/v1,http://a:1/v1", "lists http://a:1/v1 more than once"),
    ("m@http://a:1/v1,b:2", "b:2 is not a server URL"),
    ("m@http://a:1/v1,", "an empty entry is not a server URL"),
])  # fmt: skip
def test_bad_replica_lists_say_what_is_wrong(spec, message):
    with pytest.raises(InputError, match=message):
        parse_spec(spec)


def test_the_model_is_asked_of_the_first_replica_that_answers():
    with MockServer(MockSettings(model="served-model")) as server:
        model = chat_model(parse_spec(f"http://127.0.0.1:{free_port()}/v1,{server.base_url}"), timeout=5)
    assert model.model_name == "served-model"
    assert model.metadata["magicore_replicas"][1] == server.base_url


async def test_requests_go_to_the_least_busy_replica_under_the_per_server_bound(replicas):
    servers = replicas(3, latency=0.2)
    model = model_over(servers, bound=2)
    assert model.metadata["magicore_max_concurrency"] == 6 and model.metadata["magicore_replica_concurrency"] == 2
    pool = pool_for(model)
    most: dict[str, int] = {}

    async def watch():
        while True:
            for url, n in (await pool.in_flight()).items():
                most[url] = max(most.get(url, 0), n)
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    started = time.perf_counter()
    results = await asyncio.gather(*(sample(model, QUESTION) for _ in range(12)))
    elapsed = time.perf_counter() - started
    watcher.cancel()
    assert all(c[0].text.endswith("\\boxed{42}.") for c, _ in results)
    assert most == {s.url: 2 for s in servers}  # every replica busy, none above its bound
    assert [r.sent for r in pool.replicas] == [4, 4, 4]
    assert 0.4 <= elapsed < 1.5  # two waves of 6 (3 replicas x 2), not 12 one after another


async def test_a_replica_killed_mid_run_loses_no_request_and_is_probed_before_reuse(replicas):
    servers = replicas(3, latency=0.3)
    model = model_over(servers, bound=4, max_retries=0)  # failover does not need retries
    pool = pool_for(model)
    pool.probe_seconds = 0.2
    dead = servers[1]

    async def kill_soon():
        while (await pool.in_flight())[dead.url] < 4:
            await asyncio.sleep(0.005)
        dead.kill()  # four requests in flight on it

    killer = asyncio.ensure_future(kill_soon())
    results = await asyncio.gather(*(sample(model, QUESTION) for _ in range(30)))
    await killer
    assert len(results) == 30 and all(c[0].text.endswith("\\boxed{42}.") for c, _ in results)
    assert pool.status() == {servers[0].url: True, dead.url: False, servers[2].url: True}
    assert pool.replicas[1].last_error == "APIConnectionError"

    # the dead replica comes back on its port: it is probed (GET /models) before any request
    seen: list[str] = []

    class Logged(MockServer):
        def app(self):
            app = super().app()

            @web.middleware
            async def log(request, handler):
                seen.append(f"{request.method} {request.path}")
                return await handler(request)

            app.middlewares.append(log)
            return app

    with Logged(MockSettings(), port=dead.port):
        deadline = time.monotonic() + 10
        while not pool.status()[dead.url] and time.monotonic() < deadline:
            await asyncio.gather(*(sample(model, QUESTION) for _ in range(4)))
            await asyncio.sleep(0.1)
        assert pool.status()[dead.url], "the replica that came back was never probed back into use"
        await asyncio.gather(*(sample(model, QUESTION) for _ in range(12)))
    assert seen[0] == "GET /v1/models" and "POST /v1/chat/completions" in seen
    assert seen.index("POST /v1/chat/completions") > 0


async def test_with_every_replica_down_the_error_says_so(replicas):
    servers = replicas(2, latency=0.0)
    model = model_over(servers, bound=2, max_retries=1)
    pool_for(model).probe_seconds = 0.05
    for s in servers:
        s.kill()
    with pytest.raises(ModelError, match="cannot reach the model server"):
        await sample(model, QUESTION)
    assert not any(pool_for(model).status().values())


def test_replicas_marked_down_by_an_earlier_run_are_looked_at_before_giving_up():
    """A run finds no replica up (the servers have not started yet) and marks both down; once
    they answer, the next run, a fresh model on a fresh loop without retries, probes them and is
    served instead of failing without a request (health is kept for the process)."""
    ports = [free_port(), free_port()]
    spec = "vllm:mock-model@" + ",".join(f"http://127.0.0.1:{p}/v1" for p in ports)
    with pytest.raises(ModelError, match="cannot reach the model server"):
        asyncio.run(sample(chat_model(parse_spec(spec), max_retries=0), QUESTION))
    assert not any(pool_for(chat_model(parse_spec(spec), max_retries=0)).status().values())
    first, second = MockSettings(), MockSettings()
    with MockServer(first, port=ports[0]), MockServer(second, port=ports[1]):
        completions, _ = asyncio.run(sample(chat_model(parse_spec(spec), max_retries=0), QUESTION))
    assert completions[0].text.endswith("\\boxed{42}.") and len(first.requests) + len(second.requests) == 1
