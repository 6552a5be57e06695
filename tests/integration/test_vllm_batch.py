"""Batched chat completions (agents/coalesce.py) against a real vLLM server (opt-in, slow: about
2 minutes; set MAGICORE_VLLM_PYTHON, see docs/vllm.md).

The tiny random Llama that build_tiny_reward_models.py writes (`tiny-shepherd`, ChatML template)
is served as a chat model; its text means nothing. Greedy decoding makes each conversation's
completion the same whether it is sent alone or in a batch, so the test can hold the batch to
what its calls would have got alone: the same text for each, and the server's own token counts
adding up to the same totals.
"""

from __future__ import annotations

import asyncio

import pytest

from magicore.agents.backends import chat_model, parse_spec
from magicore.agents.coalesce import coalescer, run_scope
from magicore.tools import llm
from magicore.tools.errors import ModelError
from vllm_servers import Server, vllm_missing

_MISSING = vllm_missing()
pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]

QUESTIONS = [f"Question {i}: what is {i} + {i * 3}? " + "Think it through. " * i for i in range(6)]


@pytest.fixture(scope="module")
def chat_server(tiny_models, workdir):
    server = Server("tiny-chat", tiny_models["shepherd"], ["--dtype", "float32", "--max-model-len", "512"], workdir)
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def _model(server, coalesce: bool):
    return chat_model(parse_spec(f"vllm:tiny-chat@{server.url}/v1"), coalesce=coalesce, max_retries=0, timeout=300)


async def _ask(model, questions):
    with run_scope():
        return await asyncio.gather(*(llm.sample(model, [("user", q)], temperature=0.0, max_tokens=8)
                                      for q in questions), return_exceptions=True)  # fmt: skip


def test_a_batch_gives_each_call_what_it_would_get_alone(chat_server):
    async def run():
        alone_model, batched_model = _model(chat_server, False), _model(chat_server, True)
        alone = await _ask(alone_model, QUESTIONS)
        batched = await _ask(batched_model, QUESTIONS)
        return alone, batched, (await coalescer(batched_model)).stats

    alone, batched, stats = asyncio.run(run())
    assert stats.batches == 1 and stats.batched == len(QUESTIONS) and stats.single == 0
    assert [c[0].text for c, _ in batched] == [c[0].text for c, _ in alone]
    assert all(c[0].text for c, _ in batched)
    # the server's own counts: the batch's shares add up to what the calls cost alone
    assert sum(u.input_tokens for _, u in batched) == sum(u.input_tokens for _, u in alone) > 0
    assert sum(u.output_tokens for _, u in batched) == sum(u.output_tokens for _, u in alone) > 0


def test_a_conversation_longer_than_the_context_fails_alone(chat_server):
    too_long = "word " * 2000  # past --max-model-len 512: vLLM refuses the whole batch
    questions = [QUESTIONS[0], too_long, QUESTIONS[1]]

    async def run():
        model = _model(chat_server, True)
        return await _ask(model, questions), (await coalescer(model)).stats

    results, stats = asyncio.run(run())
    assert stats.fallbacks == 1 and stats.single == 3
    assert results[0][0][0].text and results[2][0][0].text
    assert isinstance(results[1], ModelError) and "HTTP 400" in str(results[1])
