"""What model calls cost: `Usage`, the callback handler that counts it on LangChain's path
(`UsageCallback`), and the scopes that collect it (`track_usage`, `charge_usage`).

Usage is counted from the results every LangChain tracer sees, so what magicore reports is what
a tracer shows; the lean request path (tools/llm.py) charges the same figures read from the
server's reply.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult


@dataclass
class Usage:
    """What calls cost. `llm_calls` counts completions (an n=k request counts k);
    `requests` counts requests for completions (a call sent in a batch with others still counts
    one: agents/coalesce.py)."""

    llm_calls: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.llm_calls + other.llm_calls,
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
        )

    def __iadd__(self, other: Usage) -> Usage:  # in place: a `track_usage` scope holds this object
        self.llm_calls += other.llm_calls
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        return self

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class UsageCallback(BaseCallbackHandler):
    """A LangChain callback handler that adds up what chat-model calls cost, from the results
    every tracer sees (`on_llm_end`). magicore counts its own usage with it; attach one to any
    run's `callbacks` to count the chat-model calls of that run, magicore's included."""

    run_inline = True  # counting is cheap: no thread hop for a sync handler on an async run

    def __init__(self) -> None:
        self.usage = Usage()
        self.response: dict[str, Any] = {}  # the last call's response id and model, when sent
        self._chunks: dict[Any, int] = {}  # streamed text chunks per model call

    def on_llm_new_token(self, token: str, *, run_id: Any = None, **kwargs: Any) -> None:
        if token:
            self._chunks[run_id] = self._chunks.get(run_id, 0) + 1

    def on_llm_end(self, response: LLMResult, *, run_id: Any = None, **kwargs: Any) -> None:
        generations = [g for batch in response.generations for g in batch if isinstance(g, ChatGeneration)]
        chunks = self._chunks.pop(run_id, 0)
        if generations:
            used = usage_of(response.llm_output, generations)
            if chunks and not (used.input_tokens or used.output_tokens):
                # a server that streams without usage (llama-cpp-python's): servers send a token
                # per chunk, so the chunks count the output; the input stays uncounted
                used.output_tokens = chunks
            self.usage += used
            self.response = response_facts(response.llm_output, generations)


#: The handlers of the enclosing `track_usage` scopes (innermost last).
_sinks: contextvars.ContextVar[tuple[UsageCallback, ...]] = contextvars.ContextVar("magicore_usage", default=())


@contextlib.contextmanager
def track_usage():
    """Collect the usage of every `sample` call made inside the block, including calls in tasks
    it spawns (they inherit the context): each call adds the scopes' handlers to its callbacks.

        with track_usage() as used:
            await reward_model.ascore_steps(question, steps)
        print(used.llm_calls, used.input_tokens)
    """
    handler = UsageCallback()
    token = _sinks.set(_sinks.get() + (handler,))
    try:
        yield handler.usage
    finally:
        _sinks.reset(token)


def charge_usage(used: Usage) -> None:
    """Count `used` in the enclosing `track_usage` scopes as if the calls had been made here
    (a replayed sample or a cached score charges what it cost when it was computed)."""
    for handler in _sinks.get():
        handler.usage += used


def active_handlers() -> tuple[UsageCallback, ...]:
    """The handlers of the enclosing `track_usage` scopes (innermost last)."""
    return _sinks.get()


def usage_of(result_llm_output: dict | None, generations: list[ChatGeneration]) -> Usage:
    usage = Usage(llm_calls=len(generations), requests=1)
    token_usage = (result_llm_output or {}).get("token_usage") or {}
    if token_usage:
        usage.input_tokens = int(token_usage.get("prompt_tokens") or 0)
        usage.output_tokens = int(token_usage.get("completion_tokens") or 0)
        return usage
    for gen in generations[:1]:
        meta = getattr(gen.message, "usage_metadata", None) if isinstance(gen.message, AIMessage) else None
        if meta:
            usage.input_tokens = int(meta.get("input_tokens") or 0)
    for gen in generations:
        meta = getattr(gen.message, "usage_metadata", None) if isinstance(gen.message, AIMessage) else None
        if meta:
            usage.output_tokens += int(meta.get("output_tokens") or 0)
    return usage


def response_facts(llm_output: dict | None, generations: list[ChatGeneration]) -> dict[str, Any]:
    """`gen_ai.response.id` and `gen_ai.response.model` when the server sent them (the callback
    sees one request's own output; `agenerate`'s combined result drops the id)."""
    output = llm_output or {}
    metadata = generations[0].message.response_metadata or {}
    response_id = output.get("id") or metadata.get("id")  # a streamed answer carries none
    model = metadata.get("model_name") or output.get("model_name") or metadata.get("model")
    return {"gen_ai.response.id": response_id, "gen_ai.response.model": model}
