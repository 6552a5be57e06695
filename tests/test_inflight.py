"""The in-flight bound per server: it halves on 429/503 once per round trip, grows back while
requests wait up to where it started, and is reported in results, traces and the benchmark."""

from __future__ import annotations

import asyncio

import pytest

from magicore.agents.backends import INFLIGHT, chat_model, parse_spec
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.tools import inflight, llm
from magicore.tools.inflight import Bound, Limiter

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


async def _hold(limiter: Limiter, count: int) -> list[int]:
    return [await limiter.acquire() for _ in range(count)]


async def _waiting(limiter: Limiter, count: int) -> list[asyncio.Task]:
    tasks = [asyncio.ensure_future(limiter.acquire()) for _ in range(count)]
    await asyncio.sleep(0)
    return tasks


async def test_the_bound_grows_by_one_per_answer_while_requests_wait():
    limiter = Limiter(Bound(2, 4))
    epochs = await _hold(limiter, 2)
    waiting = await _waiting(limiter, 5)
    assert limiter.in_flight == 2 and not any(t.done() for t in waiting)
    limiter.release(epochs[0], ok=True)  # slow start: 2 -> 3, so two waiters get a slot
    await asyncio.sleep(0)
    assert limiter.limit == 3 and limiter.in_flight == 3 and sum(t.done() for t in waiting) == 2
    for _ in range(3):
        limiter.release(epochs[1], ok=True)
        await asyncio.sleep(0)
    assert limiter.limit == 4  # the ceiling
    assert limiter.report()["peak"] == 4


async def test_an_idle_server_does_not_grow_the_bound():
    limiter = Limiter(Bound(2, 64))
    for _ in range(10):
        epoch = await limiter.acquire()
        limiter.release(epoch, ok=True)
    assert limiter.limit == 2


async def test_congestion_halves_the_bound_once_per_round_trip():
    limiter = Limiter(Bound(8, 16))
    epochs = await _hold(limiter, 8)
    limiter.release(epochs[0], ok=False, congested=True)
    limiter.release(epochs[1], ok=False, congested=True)  # sent in the same round trip: no second halving
    assert limiter.limit == 4 and limiter.report()["backoffs"] == 1
    limiter.release(epochs[2], ok=True)
    later = await limiter.acquire() if limiter.in_flight < limiter.limit else None
    assert later is None  # 5 still in flight against a bound of 4
    for epoch in epochs[3:6]:
        limiter.release(epoch, ok=True)
    later = await limiter.acquire()
    limiter.release(later, ok=False, congested=True)  # sent after the halving: halves again
    assert limiter.limit == 2 and limiter.report()["backoffs"] == 2


async def test_after_a_backoff_the_bound_grows_back_one_per_answer_to_where_it_started():
    limiter = Limiter(Bound(8, 8))
    epochs = await _hold(limiter, 8)
    limiter.release(epochs[0], ok=False, congested=True)  # 8 -> 4, 7 still in flight
    waiting = await _waiting(limiter, 20)
    for epoch in epochs[1:4]:
        limiter.release(epoch, ok=True)  # three answers with requests waiting: 4 -> 7
        await asyncio.sleep(0)
    assert limiter.limit == 7
    for epoch in epochs[4:]:
        limiter.release(epoch, ok=True)
        await asyncio.sleep(0)
    assert limiter.limit == 8  # the ceiling: where it started
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_a_fixed_bound_never_moves():
    limiter = Limiter(Bound.fixed(3))
    epochs = await _hold(limiter, 3)
    waiting = await _waiting(limiter, 2)
    limiter.release(epochs[0], ok=False, congested=True)
    limiter.release(epochs[1], ok=True)
    assert limiter.limit == 3
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_a_cancelled_waiter_does_not_keep_a_slot():
    limiter = Limiter(Bound.fixed(1))
    first = await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter.release(first, ok=True)
    assert limiter.in_flight == 0
    assert await asyncio.wait_for(limiter.acquire(), 1) == 0


def test_a_bound_must_be_positive_and_below_its_ceiling():
    with pytest.raises(ValueError, match="at least 1"):
        Bound(0, 4)
    with pytest.raises(ValueError, match="below the starting bound"):
        Bound(8, 4)


def test_each_server_kind_has_its_bound_and_ceiling(monkeypatch):
    monkeypatch.delenv("MAGICORE_MAX_CONCURRENCY", raising=False)
    for provider, start in INFLIGHT.items():
        model = chat_model(parse_spec(f"{provider}:m@http://127.0.0.1:9/v1"))
        bound = llm.server_bound(model)
        assert (bound.start, bound.ceiling, bound.adaptive) == (start, start, True), provider
    assert INFLIGHT["vllm"] == 256 and INFLIGHT["openai-compatible"] == 16
    chosen = llm.server_bound(chat_model(parse_spec("vllm:m@http://127.0.0.1:9/v1"), max_concurrency=32))
    assert (chosen.start, chosen.ceiling) == (32, 32)  # the user's bound is the ceiling
    monkeypatch.setenv("MAGICORE_MAX_CONCURRENCY", "12")
    from_env = llm.server_bound(chat_model(parse_spec("vllm:m@http://127.0.0.1:9/v1")))
    assert (from_env.start, from_env.ceiling) == (12, 12)


@pytest.mark.parametrize("transport", ["aiohttp", "openai"])
def test_a_429_halves_the_bound_and_the_request_still_succeeds(transport):
    """Both transports: magicore's own, and the openai SDK's, which retries a 429 out of sight
    (its client's response hook reports it)."""

    async def main():
        settings = MockSettings(mode="rate_limited", retry_after=0.05, failures=1)
        with MockServer(settings) as server:
            model = chat_model(parse_spec(f"vllm:mock@{server.base_url}"), timeout=10)
            model.transport = transport
            with inflight.track() as used:
                completions, _ = await llm.sample(model, [("user", QUESTION)])
            return completions, inflight.reports(used), len(settings.requests)

    completions, reports, requests = asyncio.run(main())
    assert requests == 2 and completions[0].text.endswith("\\boxed{42}.")
    (report,) = reports
    assert report["backoffs"] == 1 and report["bound"] == INFLIGHT["vllm"] // 2
    assert report["ceiling"] == INFLIGHT["vllm"] and report["server"].startswith("mock@http://127.0.0.1:")


def test_a_run_reports_its_bound_in_json():
    from magicore.graphs.api import asolve

    async def main():
        with MockServer(MockSettings()) as server:
            model = chat_model(parse_spec(f"sglang:mock@{server.base_url}"), timeout=10)
            return await asolve(QUESTION, method="sc", model=model, config=None)

    result = asyncio.run(main())
    (report,) = result.to_json()["inflight"]
    assert report == {"server": report["server"], "bound": 256, "start": 256, "ceiling": 256, "adaptive": True,
                      "peak": 1, "backoffs": 0}  # fmt: skip


async def test_traces_carry_the_bound(spans):
    from magicore.graphs.api import asolve

    with MockServer(MockSettings()) as server:
        model = chat_model(parse_spec(f"vllm:mock@{server.base_url}"), timeout=10)
        await asolve(QUESTION, method="sc", model=model)
    finished = spans.get_finished_spans()
    (chat,) = [s for s in finished if s.name.startswith("chat ")]
    assert chat.attributes["magicore.inflight.bound"] == INFLIGHT["vllm"]
    assert chat.attributes["magicore.inflight.in_flight"] == 1
    (root,) = [s for s in finished if s.name.startswith("invoke_workflow")]
    assert root.attributes["magicore.inflight.bound"] == (INFLIGHT["vllm"],)
    assert root.attributes["magicore.inflight.ceiling"] == (INFLIGHT["vllm"],)
    assert root.attributes["magicore.inflight.backoffs"] == (0,)
    assert root.attributes["magicore.inflight.server"][0].startswith("mock@http://127.0.0.1:")


def test_congestion_is_read_through_the_model_error_that_wraps_it():
    import httpx
    import openai

    from magicore.tools.errors import ModelError

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")

    def wrapped(error):
        try:
            raise ModelError("the model server answered") from error
        except ModelError as outer:
            return outer

    busy = openai.RateLimitError("busy", response=httpx.Response(429, request=request), body=None)
    broken = openai.BadRequestError("bad", response=httpx.Response(400, request=request), body=None)
    assert inflight.is_congestion(wrapped(busy)) and inflight.is_congestion(busy)
    assert inflight.is_congestion(wrapped(openai.InternalServerError("down", response=httpx.Response(503, request=request),
                                                                     body=None)))  # fmt: skip
    # a timeout or a refused connection says nothing about how much the server can take
    assert not inflight.is_congestion(wrapped(openai.APITimeoutError(request=request)))
    assert not inflight.is_congestion(wrapped(openai.APIConnectionError(request=request)))
    assert not inflight.is_congestion(wrapped(broken))
    assert not inflight.is_congestion(ModelError("the reply had no choices"))


_NOFILE_PROBE = """
import json, logging, resource, sys
from magicore.tools import inflight
soft, hard = (int(v) for v in sys.argv[1:3])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
inflight.log.addHandler(handler)
bound = inflight.fit_open_files(inflight.Bound(4096, 4096))
print(json.dumps({"start": bound.start, "ceiling": bound.ceiling, "adaptive": bound.adaptive,
                  "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "warnings": warnings}))
"""


@pytest.mark.parametrize("soft, hard, expected", [
    (1024, 8192, {"start": 4096, "ceiling": 4096, "soft": 4096 + inflight.FD_RESERVE}),  # raised to fit
    (512, 1024, {"start": 1024 - inflight.FD_RESERVE, "ceiling": 1024 - inflight.FD_RESERVE, "soft": 1024}),
])  # fmt: skip
def test_the_bound_fits_the_open_file_limit(soft, hard, expected):
    """A bound whose sockets would not fit RLIMIT_NOFILE raises the soft limit towards the hard
    one, and where even that is too low, shrinks to what fits and says so (a subprocess: a
    lowered hard limit cannot be raised again)."""
    import json
    import subprocess
    import sys

    if hard > _hard_nofile():
        pytest.skip(f"this machine's hard open-file limit is below {hard}")
    out = subprocess.run([sys.executable, "-c", _NOFILE_PROBE, str(soft), str(hard)], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    found = json.loads(out.stdout)
    assert {k: found[k] for k in expected} == expected and found["adaptive"]
    if expected["start"] < 4096:
        (warning,) = found["warnings"]
        assert "open-file limit (1024" in warning and f"at most {1024 - inflight.FD_RESERVE} in flight" in warning
    else:
        assert found["warnings"] == []


def _hard_nofile() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 62 if hard == resource.RLIM_INFINITY else hard
