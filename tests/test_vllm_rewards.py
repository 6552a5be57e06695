"""The vLLM reward client against a local HTTP server that replays real vLLM responses.

tests/fixtures/vllm/*.json hold request/response pairs recorded from vLLM 0.32.0 (CPU) serving
tiny reward models (tests/integration/test_vllm_real.py re-records them). The replay server
answers a POST whose path and JSON body equal a recorded request with the recorded response, so
these tests also fail if the client's requests drift from what was sent to the real server.
A few request "models" trigger failures instead: slow, garbled, short, busy.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import socket
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from magicore.tools.errors import InputError, ModelError
from magicore.tools.rewards.base import RewardModel
from magicore.tools.rewards.vllm import VLLMRewardModel, split_solution_steps
from magicore.tools.run_sync import run_sync

FIXTURES = {
    p.stem: json.loads(p.read_text())
    for p in sorted((Path(__file__).parent / "fixtures" / "vllm").glob("*.json"))
}
CHAIN_A = FIXTURES["prm_qwen_chain_a"]
CHAIN_B = FIXTURES["prm_qwen_chain_b"]
QUESTION = CHAIN_A["inputs"]["question"]


class _Replay(BaseHTTPRequestHandler):
    fixtures: list[dict] = []
    seen: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "body": request, "headers": dict(self.headers)})
        model = request.get("model")
        if model == "garbled":
            return self._send(200, b"<html>502 Bad Gateway</html>", "text/html")
        if model == "short":  # a valid pooling result with one row fewer than separators
            rows = [[0.0, 1.0]]
            body = {"object": "list", "data": [{"index": 0, "object": "pooling", "data": rows}]}
            return self._send(200, json.dumps(body).encode())
        if model == "slow":
            time.sleep(1.5)
            return self._send(200, b"{}")
        if model == "busy":  # vLLM past its queue, behind a proxy that rate-limits
            body = json.dumps({"error": {"message": "too many requests"}}).encode()
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "7")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        for fx in self.fixtures:
            if fx["endpoint"] == self.path and fx["request"] == request:
                return self._send(fx["status"], json.dumps(fx["response"]).encode())
        self._send(400, json.dumps({"error": {"message": "replay: no recorded request matches"}}).encode())


@pytest.fixture(scope="module")
def replay():
    _Replay.fixtures = list(FIXTURES.values())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def seen():
    _Replay.seen = []
    return _Replay.seen


def _by_hand_step_scores(fixture: dict, item: int = 0) -> list[float]:
    """softmax over [bad, good] per separator row, the positive class is index 1."""
    rows = fixture["response"]["data"][item]["data"]
    return [math.exp(good) / (math.exp(bad) + math.exp(good)) for bad, good in rows]


# -- the recordings -----------------------------------------------------------------------------


def test_fixtures_say_where_they_come_from():
    assert len(FIXTURES) >= 8
    for name, fx in FIXTURES.items():
        for key in ("endpoint", "request", "response", "vllm_version", "model_architecture", "notes"):
            assert fx.get(key) not in (None, ""), f"{name} lacks {key}"
        assert fx["recorded_from_real_server"] is True and fx["vllm_version"] == "0.32.0"


# -- process reward model -----------------------------------------------------------------------


async def test_qwen_prm_one_probability_per_step(replay, seen):
    prm = VLLMRewardModel(replay, prm_model="tiny-prm")
    assert isinstance(prm, RewardModel)
    steps = CHAIN_A["inputs"]["steps"]
    scores = await prm.ascore_steps(QUESTION, steps)
    assert len(scores) == len(steps) and all(0.0 <= s <= 1.0 for s in scores)
    assert scores == pytest.approx(_by_hand_step_scores(CHAIN_A), abs=1e-12)
    # and equal to vLLM's own softmax (the same request recorded with use_activation=true)
    activated = FIXTURES["prm_qwen_chain_a_activated"]["response"]["data"][0]["data"]
    assert scores == pytest.approx([good for _, good in activated], abs=1e-6)
    # the request is the Qwen2.5-Math-PRM chat: steps joined by, and ending with, <extra_0>
    (req,) = seen
    assert req["path"] == "/pooling" and req["body"]["task"] == "token_classify"
    assistant = req["body"]["messages"][-1]["content"]
    assert assistant == "".join(s + "<extra_0>" for s in steps)
    await prm.aclose()


async def test_qwen_prm_batch_is_one_list_per_chain(replay, seen):
    prm = VLLMRewardModel(replay, prm_model="tiny-prm")
    chains = [CHAIN_A["inputs"]["steps"], CHAIN_B["inputs"]["steps"], []]
    batch = await prm.ascore_steps_batch(QUESTION, chains)
    assert batch[0] == pytest.approx(_by_hand_step_scores(CHAIN_A), abs=1e-12)
    assert batch[1] == pytest.approx(_by_hand_step_scores(CHAIN_B), abs=1e-12)
    assert batch[2] == []  # an empty chain costs no request
    assert len(seen) == 2
    assert await prm.ascore_steps(QUESTION, []) == []
    await prm.aclose()


async def test_math_shepherd_batch_is_one_request(replay, seen):
    fx = FIXTURES["prm_shepherd_batch"]
    prm = VLLMRewardModel(replay, prm_model="tiny-shepherd", prm_style="math-shepherd")
    batch = await prm.ascore_steps_batch(fx["inputs"]["question"], fx["inputs"]["chains"])
    assert len(seen) == 1 and len(seen[0]["body"]["input"]) == 2
    for i, chain in enumerate(fx["inputs"]["chains"]):
        # rows are [logit("-"), logit("+")]: P("+") among the two candidates
        assert batch[i] == pytest.approx(_by_hand_step_scores(fx, i), abs=1e-12)
        assert len(batch[i]) == len(chain)
    assert seen[0]["body"]["input"][0].endswith("Step 3: The answer is \\boxed{7}. ки")
    await prm.aclose()


def test_base_url_may_carry_the_openai_v1_suffix():
    rm = VLLMRewardModel("http://h:8001/v1/", orm_base_url="http://h:8002", prm_model="p")
    assert (rm.base_url, rm.orm_base_url) == ("http://h:8001", "http://h:8002")


def test_separator_inside_a_step_cannot_add_a_score():
    prm = VLLMRewardModel("http://127.0.0.1:9", prm_model="m")
    content = prm._prm_messages("q", ["a <extra_0> b", "c"])[-1]["content"]
    assert content.count("<extra_0>") == 2


# -- outcome reward model -----------------------------------------------------------------------


async def test_token_reward_orm_is_sigmoid_of_last_token_reward(replay):
    fx = FIXTURES["orm_token_reward"]
    orm = VLLMRewardModel(replay, orm_model="tiny-orm")
    score = await orm.ascore_outcome(fx["inputs"]["question"], fx["inputs"]["solution"])
    (last,) = fx["response"]["data"][0]["data"][-1]
    assert 0.0 <= score <= 1.0 and score == pytest.approx(1 / (1 + math.exp(-last)), abs=1e-12)
    await orm.aclose()


async def test_classify_orm_is_sigmoid_of_its_logit(replay):
    fx = FIXTURES["orm_classify"]
    orm = VLLMRewardModel(replay, orm_model="tiny-cls-orm", orm_style="classify")
    score = await orm.ascore_outcome(fx["inputs"]["question"], fx["inputs"]["solution"])
    (logit,) = fx["response"]["data"][0]["data"]
    assert score == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-12)
    await orm.aclose()


async def test_without_orm_the_outcome_is_the_prm_score_of_the_last_step(replay, seen):
    prm = VLLMRewardModel(replay, prm_model="tiny-prm")
    steps = CHAIN_A["inputs"]["steps"]
    expected = _by_hand_step_scores(CHAIN_A)[-1]
    assert await prm.ascore_outcome(QUESTION, "\n\n".join(steps)) == pytest.approx(expected)
    assert await prm.ascore_outcome(QUESTION, "\n".join(steps) + "\n") == pytest.approx(expected)
    n = len(seen)
    assert await prm.ascore_outcome(QUESTION, "  \n ") == 0.0 and len(seen) == n
    await prm.aclose()


def test_solution_step_split():
    assert split_solution_steps("a\nb\n\nc") == ["a\nb", "c"]
    assert split_solution_steps("a\n b \n") == ["a", "b"]
    assert split_solution_steps("") == []


def test_sync_wrappers_work_across_event_loops(replay):
    rm = VLLMRewardModel(replay, prm_model="tiny-prm", orm_model="tiny-orm")
    steps = CHAIN_A["inputs"]["steps"]
    first = rm.score_steps(QUESTION, steps)
    assert rm.score_steps(QUESTION, steps) == first  # a second asyncio.run, a new client
    fx = FIXTURES["orm_token_reward"]
    assert 0.0 <= rm.score_outcome(fx["inputs"]["question"], fx["inputs"]["solution"]) <= 1.0
    assert rm.name == "vllm(tiny-prm + tiny-orm)"


@pytest.fixture
def clients(monkeypatch):
    """Weak references to every httpx client the reward model opens."""
    import httpx

    from magicore.tools.rewards import vllm

    opened: list = []

    class Recorded(httpx.AsyncClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(weakref.ref(self))

    monkeypatch.setattr(vllm.httpx, "AsyncClient", Recorded)
    return opened


def test_sync_wrappers_share_one_client_on_the_main_threads_loop(replay, clients):
    """From the main thread the synchronous wrappers run on the one loop magicore keeps for it
    (tools/run_sync.py): every call reuses its client, which stays open until `aclose` (or exit)."""
    rm = VLLMRewardModel(replay, prm_model="tiny-prm", orm_model="tiny-orm")
    steps = CHAIN_A["inputs"]["steps"]
    fx = FIXTURES["orm_token_reward"]
    for _ in range(3):
        rm.score_steps(QUESTION, steps)
        rm.score_outcome(fx["inputs"]["question"], fx["inputs"]["solution"])
    assert len(clients) == 1 and not clients[0]().is_closed and len(rm._clients) == 1
    client = clients[0]()
    run_sync(rm.aclose())
    assert client.is_closed and len(rm._clients) == 0


async def test_one_client_per_loop_shared_by_concurrent_requests(replay, clients):
    prm = VLLMRewardModel(replay, prm_model="tiny-prm")
    chains = [CHAIN_A["inputs"]["steps"], CHAIN_B["inputs"]["steps"]]
    await prm.ascore_steps_batch(QUESTION, chains)
    await prm.ascore_steps(QUESTION, chains[0])
    assert len(clients) == 1
    await prm.aclose()
    assert clients[0]().is_closed
    await prm.ascore_steps(QUESTION, chains[0])  # a closed client is replaced
    assert len(clients) == 2
    await prm.aclose()


def test_a_client_left_by_a_loop_closed_without_finalizing_is_closed_by_the_next(replay, clients):
    rm = VLLMRewardModel(replay, prm_model="tiny-prm")
    steps = CHAIN_A["inputs"]["steps"]
    loop = asyncio.new_event_loop()
    first = loop.run_until_complete(rm.ascore_steps(QUESTION, steps))
    loop.close()  # no shutdown_asyncgens: the keeper never runs
    stale = clients[0]()
    assert not stale.is_closed
    assert rm.score_steps(QUESTION, steps) == first
    assert stale.is_closed and len(clients) == 2 and not clients[1]().is_closed  # the main thread's loop's


async def test_api_key_is_sent_as_bearer_token(replay, seen, monkeypatch):
    monkeypatch.setenv("MAGICORE_VLLM_API_KEY", "sekret")
    prm = VLLMRewardModel(replay, prm_model="tiny-prm")
    await prm.ascore_steps(QUESTION, CHAIN_A["inputs"]["steps"])
    assert seen[0]["headers"]["Authorization"] == "Bearer sekret"
    await prm.aclose()


# -- failures -----------------------------------------------------------------------------------


def _one_readable_sentence(msg: str, *parts: str) -> None:
    assert "\n" not in msg and msg.endswith(".") and "Traceback" not in msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


async def _error(rm: VLLMRewardModel, steps=("one", "two")) -> str:
    with pytest.raises(ModelError) as err:
        await rm.ascore_steps(QUESTION, list(steps))
    await rm.aclose()
    return str(err.value)


async def test_recorded_unknown_model_404(replay):
    steps = FIXTURES["error_unknown_model"]["inputs"]["steps"]
    msg = await _error(VLLMRewardModel(replay, prm_model="no-such-model"), steps)
    _one_readable_sentence(msg, replay, "no-such-model", "HTTP 404", "does not exist")


async def test_recorded_http_500(replay):
    fx = FIXTURES["error_engine_dead"]
    rm = VLLMRewardModel(replay, prm_model="tiny-prm")
    with pytest.raises(ModelError) as err:
        await rm.ascore_steps(fx["inputs"]["question"], fx["inputs"]["steps"])
    _one_readable_sentence(str(err.value), replay, "HTTP 500", "EngineCore encountered an issue")
    await rm.aclose()


async def test_malformed_response(replay):
    msg = await _error(VLLMRewardModel(replay, prm_model="garbled"))
    _one_readable_sentence(msg, replay, "not a vLLM pooling result", "502 Bad Gateway")


async def test_wrong_number_of_step_scores(replay):
    msg = await _error(VLLMRewardModel(replay, prm_model="short"))
    _one_readable_sentence(msg, "returned 1 step scores for 2 steps", "step_tag_id", "<extra_0>")


async def test_a_busy_server_says_so_with_its_status_and_retry_after(replay):
    rm = VLLMRewardModel(replay, prm_model="busy")
    with pytest.raises(ModelError) as err:
        await rm.ascore_steps(QUESTION, ["Step 1: 1 + 1 = 2."])
    await rm.aclose()
    assert err.value.status == 429 and err.value.retry_after == 7 and err.value.transient
    _one_readable_sentence(str(err.value), replay, "HTTP 429", "too many requests")


async def test_timeout(replay):
    started = time.monotonic()
    msg = await _error(VLLMRewardModel(replay, prm_model="slow", timeout=0.3))
    assert time.monotonic() - started < 1.4
    _one_readable_sentence(msg, replay, "did not answer within 0.3 s")


def test_retry_after_is_read_in_each_form_a_server_sends():
    from email.utils import formatdate

    from magicore.tools.errors import retry_after_seconds

    assert retry_after_seconds({"retry-after": "7"}) == 7
    assert retry_after_seconds({"retry-after-ms": "2500"}) == 2.5
    assert retry_after_seconds({"retry-after-ms": "2500", "retry-after": "9"}) == 2.5  # the finer one
    assert 55 < retry_after_seconds({"retry-after": formatdate(time.time() + 60, usegmt=True)}) <= 61
    assert retry_after_seconds({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


async def test_connection_refused():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    msg = await _error(VLLMRewardModel(url, prm_model="tiny-prm", timeout=5))
    _one_readable_sentence(msg, url, "could not connect", "vllm serve")


async def test_unconfigured_models_and_bad_options():
    with pytest.raises(InputError):
        await VLLMRewardModel("http://127.0.0.1:9", orm_model="o").ascore_steps("q", ["a"])
    with pytest.raises(InputError):
        await VLLMRewardModel("http://127.0.0.1:9").ascore_outcome("q", "a")
    with pytest.raises(InputError):
        VLLMRewardModel("http://127.0.0.1:9", prm_style="nope")
    with pytest.raises(InputError):
        VLLMRewardModel("http://127.0.0.1:9", orm_style="nope")

