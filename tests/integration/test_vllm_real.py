"""The vLLM reward client against real vLLM servers (opt-in, slow: about 3 minutes).

Set MAGICORE_VLLM_PYTHON to a Python that has vllm (``.ci/vllm-integration`` makes one). The
suite builds tiny random reward models (build_tiny_reward_models.py), serves each with vLLM on
127.0.0.1, and checks the client on them. With MAGICORE_RECORD_FIXTURES=1 it also rewrites
tests/fixtures/vllm/*.json, which the default suite (tests/test_vllm_rewards.py) replays.
MAGICORE_VLLM_WORKDIR keeps the built models and server logs in a known place.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from magicore.tools.errors import ModelError
from magicore.tools.rewards.vllm import VLLMRewardModel, positive_probability
from vllm_servers import VLLM_PYTHON, Server, vllm_missing

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "vllm"
RECORD = os.environ.get("MAGICORE_RECORD_FIXTURES") == "1"


_MISSING = vllm_missing()
pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have now?"
STEPS_A = [
    "Tom starts with 3 apples.",
    "He buys 4 more, so he has 3 + 4 = 7 apples.",
    "The answer is \\boxed{7}.",
]
STEPS_B = [
    "Tom has 3 apples and buys 4, so 3 * 4 = 12.",
    "The answer is \\boxed{12}.",
]
SOLUTION = "\n\n".join(STEPS_A)

VLLM_PROMPT_ARGS = ["--runner", "pooling", "--dtype", "float32", "--max-model-len", "512"]


# -- models and servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tiny_models, workdir):
    info = tiny_models
    specs = {
        "tiny-prm": (info["prm"], ["--pooler-config", json.dumps({"step_tag_id": info["separator_id"]})]),
        "tiny-orm": (info["orm"], []),
        "tiny-cls-orm": (info["cls_orm"], []),
        "tiny-shepherd": (info["shepherd"], [
            "--convert", "classify",
            "--hf-overrides", json.dumps({"classifier_from_token": ["-", "+"],
                                          "method": "no_post_processing"}),
            "--pooler-config", json.dumps({"task": "token_classify", "pooling_type": "STEP",
                                           "step_tag_id": info["shepherd_tag_id"]}),
        ]),
    }
    started = {name: Server(name, d, [*VLLM_PROMPT_ARGS, *extra], workdir) for name, (d, extra) in specs.items()}
    try:
        for server in started.values():
            server.wait()
        for server in started.values():
            print(f"{server.name}: healthy after {server.ready_after:.0f} s", file=sys.stderr)
        yield started
    finally:
        for server in started.values():
            server.stop()


ARCH = {"tiny-prm": "Qwen2ForProcessRewardModel", "tiny-orm": "Qwen2ForRewardModel",
        "tiny-cls-orm": "Qwen2ForSequenceClassification",
        "tiny-shepherd": "LlamaForCausalLM (--convert classify, STEP pooling)"}


# -- recording ----------------------------------------------------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the real server and keeps each exchange's JSON bodies."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[dict] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        await response.aclose()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        self.exchanges.append({"endpoint": request.url.path,
                               "request": json.loads(request.content),
                               "status": response.status_code, "response": parsed})
        headers = [(k, v) for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _client(server: Server, **kw) -> tuple[VLLMRewardModel, RecordingTransport]:
    transport = RecordingTransport()
    return VLLMRewardModel(server.url, transport=transport, **kw), transport


def _save(case: str, exchange: dict, server: Server, inputs: dict, notes: str) -> None:
    if not RECORD:
        return
    version = httpx.get(server.url + "/version", timeout=10).json().get("version")
    fixture = {"case": case, "endpoint": exchange["endpoint"], "request": exchange["request"],
               "status": exchange["status"], "response": exchange["response"],
               "vllm_version": version, "model_architecture": ARCH[server.name],
               "serve_command": server.serve_command(), "inputs": inputs,
               "recorded_from_real_server": True, "notes": notes}
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{case}.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")


def _rows(exchange: dict) -> list:
    return exchange["response"]["data"][0]["data"]


# -- tests --------------------------------------------------------------------------------------


async def test_qwen_prm_one_probability_per_step(servers):
    server = servers["tiny-prm"]
    prm, rec = _client(server, prm_model="tiny-prm")
    scores = await prm.ascore_steps(QUESTION, STEPS_A)
    assert len(scores) == len(STEPS_A) and all(0.0 <= s <= 1.0 for s in scores)
    (ex,) = rec.exchanges
    assert scores == [positive_probability(r) for r in _rows(ex)]
    assert ex["request"]["messages"][2]["content"].count("<extra_0>") == len(STEPS_A)
    _save("prm_qwen_chain_a", ex, server, {"question": QUESTION, "steps": STEPS_A},
          "Qwen2.5-Math-PRM style: token_classify with STEP pooling on <extra_0> "
          "(--pooler-config step_tag_id = id of <extra_0> in the tiny tokenizer); one "
          "[logit_bad, logit_good] row per separator; the client's score is softmax(row)[1].")

    # vLLM's own activation (softmax over the two labels) gives the same probabilities.
    body = dict(ex["request"], use_activation=True)
    r = httpx.post(server.url + "/pooling", json=body, timeout=60)
    assert r.status_code == 200
    served = [row[1] for row in r.json()["data"][0]["data"]]
    assert scores == pytest.approx(served, abs=1e-6)
    _save("prm_qwen_chain_a_activated",
          {"endpoint": "/pooling", "request": body, "status": 200, "response": r.json()}, server,
          {"question": QUESTION, "steps": STEPS_A},
          "Same request with use_activation=true: vLLM applies softmax per row itself. The "
          "client never sends this; it documents that its own softmax matches vLLM's.")
    await prm.aclose()


async def test_qwen_prm_batch_matches_single_chains(servers):
    server = servers["tiny-prm"]
    prm, rec = _client(server, prm_model="tiny-prm")
    batch = await prm.ascore_steps_batch(QUESTION, [STEPS_A, STEPS_B, []])
    assert [len(b) for b in batch] == [3, 2, 0]
    assert batch[0] == pytest.approx(await prm.ascore_steps(QUESTION, STEPS_A), abs=1e-6)
    assert batch[1] == pytest.approx(await prm.ascore_steps(QUESTION, STEPS_B), abs=1e-6)
    ex_b = next(e for e in rec.exchanges if e["request"]["messages"][2]["content"].count("<extra_0>") == 2)
    _save("prm_qwen_chain_b", ex_b, server, {"question": QUESTION, "steps": STEPS_B},
          "Second chain of a batch: Qwen-PRM chains are sent as concurrent chat requests, "
          "one conversation per request.")
    await prm.aclose()


async def test_math_shepherd_batch_is_one_request(servers):
    server = servers["tiny-shepherd"]
    prm, rec = _client(server, prm_model="tiny-shepherd", prm_style="math-shepherd")
    batch = await prm.ascore_steps_batch(QUESTION, [STEPS_A, STEPS_B])
    assert len(rec.exchanges) == 1
    (ex,) = rec.exchanges
    assert len(ex["request"]["input"]) == 2
    for scores, item in zip(batch, ex["response"]["data"]):
        assert scores == [positive_probability(r) for r in item["data"]]
        assert all(0.0 <= s <= 1.0 for s in scores)
    assert [len(b) for b in batch] == [3, 2]
    single = await prm.ascore_steps(QUESTION, STEPS_B)
    assert single == pytest.approx(batch[1], abs=1e-5)
    _save("prm_shepherd_batch", ex, server, {"question": QUESTION, "chains": [STEPS_A, STEPS_B]},
          "math-shepherd style: LlamaForCausalLM served with --convert classify, "
          "classifier_from_token [\"-\", \"+\"] and STEP pooling on the step tag ки; one "
          "[logit(-), logit(+)] row per tag; score = P(+) among the two. Two chains in one request.")
    await prm.aclose()


async def test_token_reward_orm(servers):
    server = servers["tiny-orm"]
    orm, rec = _client(server, orm_model="tiny-orm")
    score = await orm.ascore_outcome(QUESTION, SOLUTION)
    (ex,) = rec.exchanges
    rows = _rows(ex)
    assert all(len(r) == 1 for r in rows) and len(rows) > 10  # one raw reward per token
    assert 0.0 <= score <= 1.0 and score == positive_probability(rows[-1])
    _save("orm_token_reward", ex, server, {"question": QUESTION, "solution": SOLUTION},
          "Qwen2.5-Math-RM style (Qwen2ForRewardModel): token_classify with ALL pooling returns "
          "a raw reward per token; the last token's reward scores the solution; score = sigmoid.")
    await orm.aclose()


async def test_classify_orm(servers):
    server = servers["tiny-cls-orm"]
    orm, rec = _client(server, orm_model="tiny-cls-orm", orm_style="classify")
    score = await orm.ascore_outcome(QUESTION, SOLUTION)
    (ex,) = rec.exchanges
    assert score == positive_probability(_rows(ex))
    # /classify applies vLLM's sigmoid itself: the same number.
    body = {"model": "tiny-cls-orm", "messages": ex["request"]["messages"]}
    probs = httpx.post(server.url + "/classify", json=body, timeout=60).json()["data"][0]["probs"]
    assert score == pytest.approx(probs[0], abs=1e-6)
    _save("orm_classify", ex, server, {"question": QUESTION, "solution": SOLUTION},
          "Sequence-classifier ORM (1 label): task classify returns the last token's logit; "
          f"score = sigmoid. vLLM's /classify gives probs {probs} for the same chat.")
    await orm.aclose()


async def test_orm_fallback_is_last_step_score(servers):
    prm, _ = _client(servers["tiny-prm"], prm_model="tiny-prm")
    assert await prm.ascore_outcome(QUESTION, SOLUTION) == (await prm.ascore_steps(QUESTION, STEPS_A))[-1]
    await prm.aclose()


async def test_unknown_model_is_a_model_error(servers):
    server = servers["tiny-prm"]
    prm, rec = _client(server, prm_model="no-such-model")
    with pytest.raises(ModelError) as err:
        await prm.ascore_steps(QUESTION, STEPS_A)
    msg = str(err.value)
    assert server.url in msg and "no-such-model" in msg and "HTTP 404" in msg
    _save("error_unknown_model", rec.exchanges[0], server, {"question": QUESTION, "steps": STEPS_A},
          "A model name the server does not serve: HTTP 404 with vLLM's error body.")
    await prm.aclose()


def test_sync_wrappers_use_a_fresh_client_per_loop(servers):
    prm = VLLMRewardModel(servers["tiny-prm"].url, prm_model="tiny-prm")
    first = prm.score_steps(QUESTION, STEPS_A)
    assert prm.score_steps(QUESTION, STEPS_A) == first
    assert asyncio.run(prm.ascore_steps(QUESTION, STEPS_A)) == first


async def test_vllm_rows_equal_a_transformers_forward_pass(servers, tiny_models):
    """vLLM's pooling, independently: the rows it returns for the client's requests equal the
    rows of a plain transformers forward pass over the same token ids (from vLLM's /tokenize)."""
    cases = [
        ("tiny-prm", "prm", dict(prm_model="tiny-prm"), "steps"),
        ("tiny-shepherd", "shepherd", dict(prm_model="tiny-shepherd", prm_style="math-shepherd"), "steps"),
        ("tiny-orm", "orm", dict(orm_model="tiny-orm"), "outcome"),
        ("tiny-cls-orm", "cls_orm", dict(orm_model="tiny-cls-orm", orm_style="classify"), "outcome"),
    ]
    for name, key, kw, kind in cases:
        server = servers[name]
        rm, rec = _client(server, **kw)
        if kind == "steps":
            await rm.ascore_steps(QUESTION, STEPS_A)
        else:
            await rm.ascore_outcome(QUESTION, SOLUTION)
        await rm.aclose()
        (ex,) = rec.exchanges
        req = ex["request"]
        if "messages" in req:
            tok_body = {"model": name, "messages": req["messages"], "add_generation_prompt": False}
        else:
            tok_body = {"model": name, "prompt": req["input"][0]}
        tokens = httpx.post(server.url + "/tokenize", json=tok_body, timeout=60).json()["tokens"]
        assert len(tokens) == ex["response"]["usage"]["prompt_tokens"]
        out = subprocess.run(
            [VLLM_PYTHON, str(HERE / "build_tiny_reward_models.py"), tiny_models[key], "--reference"],
            input=json.dumps([tokens]), capture_output=True, text=True, check=True, timeout=300,
        )
        (expected,) = json.loads(out.stdout.strip().splitlines()[-1])
        got = _rows(ex)
        assert len(got) == len(expected), name
        assert _flat(got) == pytest.approx(_flat(expected), abs=1e-4), name


def _flat(rows: list) -> list[float]:
    return [x for r in rows for x in (r if isinstance(r, list) else [r])]
