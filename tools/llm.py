"""Every LLM call magicore makes goes through `sample`: n-way sampling, usage, errors.

Agents and reward models alike call it (tools take their models as arguments, so it lives here
rather than in agents/).

`sample` asks for n completions in one request where the server honours `n` (vLLM, OpenAI) and
falls back to bounded concurrent requests where it silently returns one choice (llama.cpp,
Ollama). Which applies is detected from the first answer, not assumed, and remembered per
server and model. Server failures become `ModelError` with one readable sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration
from opentelemetry.trace import SpanKind

from magicore.tools import telemetry
from magicore.tools.errors import ModelError
from magicore.tools.loop_local import LoopLocal

Messages = Sequence[BaseMessage | tuple[str, str]]

#: Per (server, model): whether `n` is honoured. Absent means not yet known.
_n_honoured: dict[tuple, bool] = {}
#: Per event loop: {(server, model): the semaphore bounding requests in flight}.
_limits: LoopLocal[dict[tuple, asyncio.Semaphore]] = LoopLocal(dict)


@dataclass
class Usage:
    """What calls cost. `llm_calls` counts completions (an n=k request counts k);
    `requests` counts HTTP requests."""

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

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


#: The usage accumulators of the enclosing `track_usage` scopes (innermost last).
_sinks: contextvars.ContextVar[tuple[Usage, ...]] = contextvars.ContextVar("magicore_usage", default=())


@contextlib.contextmanager
def track_usage():
    """Collect the usage of every `sample` call made inside the block, including calls in tasks
    it spawns (they inherit the context).

        with track_usage() as used:
            await reward_model.ascore_steps(question, steps)
        print(used.llm_calls, used.input_tokens)
    """
    usage = Usage()
    token = _sinks.set(_sinks.get() + (usage,))
    try:
        yield usage
    finally:
        _sinks.reset(token)


def charge_usage(used: Usage) -> None:
    """Count `used` in the enclosing `track_usage` scopes as if the calls had been made here
    (a replayed sample or a cached score charges what it cost when it was computed)."""
    _record(used)


def _record(used: Usage) -> None:
    for sink in _sinks.get():
        sink.llm_calls += used.llm_calls
        sink.requests += used.requests
        sink.input_tokens += used.input_tokens
        sink.output_tokens += used.output_tokens


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None
    logprobs: list[dict] | None = None
    tool_calls: list[dict] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def model_key(model: BaseChatModel) -> tuple:
    """Identifies a model endpoint: class, server URL and model name."""
    url = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return (type(model).__name__, str(url), str(name))


def model_label(model: BaseChatModel) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)


async def _semaphore(model: BaseChatModel) -> asyncio.Semaphore:
    per_loop = await _limits.get()
    key = model_key(model)
    if key not in per_loop:
        limit = (model.metadata or {}).get("magicore_max_concurrency", 8)
        per_loop[key] = asyncio.Semaphore(limit)
    return per_loop[key]


def _request_kwargs(model: BaseChatModel, **params: Any) -> dict[str, Any]:
    """Keep the sampling parameters the model class declares; others would be rejected or lost."""
    fields = getattr(type(model), "model_fields", {})
    return {k: v for k, v in params.items() if v is not None and k in fields}


def _describe(model: BaseChatModel, error: BaseException) -> str:
    """One sentence saying what went wrong with a model call."""
    where = getattr(model, "openai_api_base", None) or model_label(model)
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on openai
        openai = None
    if openai is not None:
        if isinstance(error, openai.APITimeoutError):
            timeout = getattr(model, "request_timeout", None)
            return f"the model server at {where} did not answer within {timeout} s (timed out)"
        if isinstance(error, openai.APIConnectionError):
            return f"cannot reach the model server at {where}: connection failed"
        if isinstance(error, openai.APIStatusError):
            detail = _error_detail(error)
            return f"the model server at {where} answered HTTP {error.status_code}{detail}"
        if isinstance(error, openai.APIResponseValidationError):
            return f"the model server at {where} sent a response that is not a chat completion"
    if isinstance(error, json.JSONDecodeError):
        return f"the model server at {where} sent a malformed response ({type(error).__name__})"
    return f"the model call to {where} failed: {type(error).__name__}: {error}".strip()


def _transient(error: BaseException) -> bool:
    try:
        import openai
    except ImportError:  # pragma: no cover
        return False
    if isinstance(error, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


def _error_detail(error: Any) -> str:
    body = getattr(error, "body", None)
    message = ""
    if isinstance(body, dict):
        inner = body.get("error")
        message = body.get("message") or (inner.get("message") if isinstance(inner, dict) else inner)
    message = " ".join(str(message or getattr(error, "message", "") or "").split())[:200]
    return f": {message}" if message else ""


def _completion(gen: ChatGeneration) -> Completion:
    info = gen.generation_info or {}
    message = gen.message
    text = message.content if isinstance(message.content, str) else str(message.content)
    logprobs = info.get("logprobs")
    if isinstance(logprobs, dict):
        logprobs = logprobs.get("content")
    tool_calls = list(getattr(message, "tool_calls", None) or [])
    return Completion(text=text or "", finish_reason=info.get("finish_reason"), logprobs=logprobs,
                      tool_calls=tool_calls)


def _usage(result_llm_output: dict | None, generations: list[ChatGeneration]) -> Usage:
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


async def _request(model: BaseChatModel, messages: Messages, n: int, params: dict) -> tuple[list[Completion], Usage]:
    extra = params.pop("extra", None) or {}
    kwargs = {**_request_kwargs(model, n=n if n > 1 else None, **params), **extra}
    messages = convert_to_messages(messages)
    async with await _semaphore(model):
        attributes = _chat_attributes(model, n, params) if telemetry.enabled() else None
        with telemetry.span(f"chat {model_label(model)}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                result = await model.agenerate([messages], **kwargs)
            except (asyncio.CancelledError, ModelError):  # a ModelError already says what happened
                raise
            except Exception as error:  # every backend raises its own types; the user gets one sentence
                raise ModelError(_describe(model, error), transient=_transient(error)) from error
            generations = [g for g in result.generations[0] if isinstance(g, ChatGeneration)]
            if not generations:
                raise ModelError(f"the model server at {model_label(model)} returned no completion")
            used = _usage(result.llm_output, generations)
            completions = [_completion(g) for g in generations]
            link = telemetry.current_link()
            for c in completions:
                c.metadata["span"] = link
            if span.is_recording():
                _record_response(span, messages, completions, used)
    _record(used)
    return completions, used


def _chat_attributes(model: BaseChatModel, n: int, params: dict) -> dict[str, Any]:
    url = getattr(model, "openai_api_base", None) or ""
    host, _, port = url.split("://", 1)[-1].split("/", 1)[0].partition(":")
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": telemetry.provider_name(model),
        "gen_ai.request.model": model_label(model),
        "gen_ai.request.temperature": params.get("temperature"),
        "gen_ai.request.top_p": params.get("top_p"),
        "gen_ai.request.max_tokens": params.get("max_tokens") or getattr(model, "max_tokens", None),
        "gen_ai.request.seed": params.get("seed"),
        "gen_ai.request.choice.count": n if n != 1 else None,
        "server.address": host or None,
        "server.port": int(port) if port.isdigit() else None,
    }


def _record_response(span, messages, completions: list[Completion], used: Usage) -> None:
    attributes: dict[str, Any] = {
        "gen_ai.usage.input_tokens": used.input_tokens,
        "gen_ai.usage.output_tokens": used.output_tokens,
        "gen_ai.response.finish_reasons": [c.finish_reason or "unknown" for c in completions],
    }
    if telemetry.capture_content():
        attributes["gen_ai.input.messages"] = json.dumps([_message_json(m) for m in messages], default=str)
        attributes["gen_ai.output.messages"] = json.dumps(
            [{"role": "assistant", "parts": _parts(c.text, c.tool_calls), "finish_reason": c.finish_reason}
             for c in completions], default=str,
        )  # fmt: skip
    telemetry.set_attributes(span, attributes)


#: LangChain message types as GenAI semantic-convention roles (system, user, assistant, tool).
_ROLES = {"system": "system", "developer": "system", "human": "user", "ai": "assistant",
          "tool": "tool", "function": "tool"}  # fmt: skip


def _parts(text: str, tool_calls: Sequence[dict] = ()) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text or not tool_calls else []
    for call in tool_calls:
        parts.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
                      "arguments": call.get("args")})  # fmt: skip
    return parts


def _message_json(m: BaseMessage) -> dict[str, Any]:
    """One input message in the GenAI conventions' shape: a role and its parts, tool calls as
    `tool_call` parts and a tool's result as a `tool_call_response` part."""
    role = str(getattr(m, "role", "") or m.type) if m.type == "chat" else m.type  # ChatMessage: its own role
    role = _ROLES.get(role, role)
    if role == "tool":
        call_id = getattr(m, "tool_call_id", None) or getattr(m, "name", None)
        return {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": m.text}]}
    return {"role": role, "parts": _parts(m.text, getattr(m, "tool_calls", None) or [])}


async def sample(
    model: BaseChatModel,
    messages: Messages,
    *,
    n: int = 1,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    stop: list[str] | None = None,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    extra: dict[str, Any] | None = None,
    on_completion: Callable[[Completion], None] | None = None,
) -> tuple[list[Completion], Usage]:
    """n completions of `messages` and what they cost.

    Args:
        extra: further request arguments passed as they are (for example `tools`).
        on_completion: called with each completion as it arrives (for progress display).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    params = dict(temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=stop,
                  logprobs=logprobs, top_logprobs=top_logprobs, extra=extra)  # fmt: skip
    key = model_key(model)
    supports_n = "n" in getattr(type(model), "model_fields", {})
    completions: list[Completion] = []
    usage = Usage()

    if n > 1 and supports_n and _n_honoured.get(key, True):
        got, used = await _request(model, messages, n, dict(params, seed=seed))
        usage += used
        if key not in _n_honoured:
            _n_honoured[key] = len(got) >= n
        completions.extend(got[:n])
        for c in got[:n]:
            on_completion and on_completion(c)
    if len(completions) < n:
        missing = n - len(completions)
        offset = len(completions)

        async def one(i: int) -> tuple[list[Completion], Usage]:
            # Distinct seeds keep seeded samples from being identical copies.
            s = None if seed is None else seed + offset + i
            got, used = await _request(model, messages, 1, dict(params, seed=s))
            for c in got[:1]:
                on_completion and on_completion(c)
            return got[:1], used

        tasks = [asyncio.ensure_future(one(i)) for i in range(missing)]
        try:
            for got, used in await asyncio.gather(*tasks):
                completions.extend(got)
                usage += used
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
    return completions, usage


def n_support(model: BaseChatModel) -> bool | None:
    """Whether the model's server honours `n` (None until the first n>1 request)."""
    return _n_honoured.get(model_key(model))
