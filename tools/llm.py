"""Every LLM call magicore makes goes through `sample`: n-way sampling, usage, errors.

Agents and reward models alike call it (tools take their models as arguments, so it lives here
rather than in agents/).

`sample` asks for n completions in one request where the server honours `n` (vLLM, OpenAI) and
falls back to bounded concurrent requests where it silently returns one choice (llama.cpp,
Ollama). Which applies is detected from the first answer, not assumed, and remembered per
server and model. Server failures become `ModelError` with one readable sentence.

Every call carries the callbacks of the LangChain or LangGraph run it happens in (read from the
run's config, which LangGraph keeps in a context variable inside a node), so LangGraph's
`stream_mode="messages"`, `astream_events` and any LangChain tracer see magicore's model calls
as children of the node that made them. Usage is counted by a callback handler on the same path
(`UsageCallback`, tools/usage.py): what magicore reports is what every tracer sees.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackHandler, BaseCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration
from opentelemetry.trace import SpanKind

from magicore.tools import inflight, telemetry
from magicore.tools.errors import ModelError, retry_after_seconds
from magicore.tools.loop_local import LoopLocal
from magicore.tools.usage import Usage, UsageCallback, active_handlers, charge_usage

Messages = Sequence[BaseMessage | tuple[str, str]]


class _PerModel:
    """Facts learnt about a model object, forgotten with it. Keyed by the object, not by its URL:
    two model objects at one URL may talk to two servers (a port reused by a new server)."""

    def __init__(self) -> None:
        self._facts: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, model: BaseChatModel, default: Any = None) -> Any:
        entry = self._facts.get(id(model))
        return entry[1] if entry is not None and entry[0]() is model else default

    def __contains__(self, model: BaseChatModel) -> bool:
        entry = self._facts.get(id(model))
        return entry is not None and entry[0]() is model

    def __setitem__(self, model: BaseChatModel, value: Any) -> None:
        if model not in self:
            weakref.finalize(model, self._facts.pop, id(model), None)
        self._facts[id(model)] = (weakref.ref(model), value)

    def clear(self) -> None:
        self._facts.clear()


#: Per model object: whether its server honours `n`. Absent means not yet known.
_n_honoured = _PerModel()
#: Per event loop: {(server, model): the limiter of requests in flight (tools/inflight.py)}.
_limits: LoopLocal[dict[tuple, inflight.Limiter]] = LoopLocal(dict)


def run_callbacks() -> Any:
    """The callbacks of the LangChain/LangGraph run the caller is in (None outside any run).

    Inside a LangGraph node the run's config sits in langchain-core's context variable (set by
    LangGraph; graphs/compat.py sets it on Python 3.10), and its `callbacks` is the node's child
    callback manager: a model call made with it becomes a child run of the node."""
    from langchain_core.runnables.config import var_child_runnable_config

    return (var_child_runnable_config.get() or {}).get("callbacks")


def _handlers(callbacks: Any) -> list:
    if isinstance(callbacks, BaseCallbackManager):
        return list(callbacks.handlers)
    return list(callbacks or [])


def _unwatched(model: BaseChatModel, callbacks: Any) -> bool:
    """Whether no LangChain handler would see a call: none in the run, none set on the model
    (`callbacks=`, `verbose=True`), and none LangChain adds by itself outside a run (LangSmith
    tracing, `collect_runs`, `get_usage_metadata_callback`, `get_openai_callback`)."""
    if _handlers(callbacks) or getattr(model, "callbacks", None) or getattr(model, "verbose", False):
        return False
    return not AsyncCallbackManager.configure(inheritable_callbacks=None, local_callbacks=None).handlers


def _with_handlers(callbacks: Any, extra: list[BaseCallbackHandler]) -> Any:
    """The run's callbacks plus magicore's own handlers (usage), for this call only."""
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()  # the same parent run, tags and metadata
        for handler in extra:
            manager.add_handler(handler, inherit=False)
        return manager
    return [*(callbacks or []), *extra]


def _streams(callbacks: Any) -> bool:
    """Whether a handler of the run asks chat models to stream (LangGraph's `messages` mode,
    `astream_events`): langchain-core streams a call when such a handler is present."""
    try:  # private, but what langchain-core itself checks (and LangGraph subclasses)
        from langchain_core.tracers import _streaming
    except ImportError:  # pragma: no cover - the module moved: assume streaming may happen
        return True
    kinds = tuple(getattr(_streaming, name) for name in ("_StreamingCallbackHandler", "_V2StreamingCallbackHandler")
                  if hasattr(_streaming, name))  # fmt: skip
    return any(isinstance(h, kinds) for h in _handlers(callbacks))


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


def server_bound(model: BaseChatModel) -> inflight.Bound:
    """The in-flight bound of the model's server, from the metadata `chat_model` sets
    (agents/backends.py): after a halving it grows back to where it started, never past it; a
    model made elsewhere gets a fixed bound of 8."""
    metadata = model.metadata or {}
    start = int(metadata.get("magicore_max_concurrency", 8))
    return inflight.Bound(start, start, adaptive=bool(metadata.get("magicore_inflight_adaptive", False)))


async def limiter(model: BaseChatModel) -> inflight.Limiter:
    """The running event loop's limiter of requests in flight to the model's server."""
    per_loop = await _limits.get()
    key = model_key(model)
    found = per_loop.get(key)
    if found is None:
        url = getattr(model, "openai_api_base", None) or ""
        bound = inflight.fit_open_files(server_bound(model))
        found = per_loop[key] = inflight.Limiter(bound, label=f"{model_label(model)}@{url}".rstrip("@"))
    return found


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


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    return retry_after_seconds(getattr(response, "headers", None))


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


async def _request(model: BaseChatModel, messages: Messages, n: int, params: dict) -> tuple[list[Completion], Usage]:
    extra = params.pop("extra", None) or {}
    kwargs = {**_request_kwargs(model, n=n if n > 1 else None, **params), **extra}
    callbacks = run_callbacks()
    # Lean path: with no callback handler to tell, magicore's own model class posts the request
    # and reads the reply itself, without LangChain's `agenerate` (measured in docs/bench.md:
    # about half of the client's CPU per request). A run with handlers (a tracer, LangGraph's
    # `messages` stream, `astream_events`) takes LangChain's path and sees every call.
    lean = getattr(model, "lean_payload", None)
    payload = lean(messages, **kwargs) if lean is not None and _unwatched(model, callbacks) else None
    counter = None
    if payload is None:
        if (n > 1 or params.get("logprobs")) and _streams(callbacks):
            # A stream carries one choice (an n=k answer would merge into one text) and a judge's
            # logprobs are read from the whole answer: these calls are not streamed.
            kwargs["stream"] = False
        counter = UsageCallback()
        callbacks = _with_handlers(callbacks, [counter, *active_handlers()])
        messages = convert_to_messages(messages)
    bound = await limiter(model)
    inflight.note(bound)
    async with bound.slot():
        attributes = _chat_attributes(model, n, params, bound) if telemetry.enabled() else None
        with telemetry.span(f"chat {model_label(model)}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                if payload is not None:
                    reply = await model.apost_lean(payload)
                else:
                    result = await model.agenerate([messages], callbacks=callbacks, **kwargs)
            except (asyncio.CancelledError, ModelError):  # a ModelError already says what happened
                raise
            except Exception as error:  # every backend raises its own types; the user gets one sentence
                raise ModelError(_describe(model, error), transient=_transient(error),
                                 status=_status(error), retry_after=_retry_after(error)) from error  # fmt: skip
            if payload is not None:
                completions, used, facts = _from_reply(model, reply)
                charge_usage(used)
            else:
                generations = [g for g in result.generations[0] if isinstance(g, ChatGeneration)]
                if not generations:
                    raise ModelError(f"the model server at {model_label(model)} returned no completion")
                used, facts = counter.usage, counter.response
                completions = [_completion(g) for g in generations]
            link = telemetry.current_link()
            for c in completions:
                c.metadata["span"] = link
            if span.is_recording():
                _record_response(span, convert_to_messages(messages), completions, used, facts)
    return completions, used


def _from_reply(model: BaseChatModel, reply: dict) -> tuple[list[Completion], Usage, dict[str, Any]]:
    """Completions, usage and response facts from a chat-completion reply, as LangChain's path
    reads them (a reply with tool calls goes through langchain-openai's own reader)."""
    choices = reply["choices"]
    if any(c["message"].get("tool_calls") or c["message"].get("function_call") for c in choices):
        result = model._create_chat_result(reply, {})
        completions = [_completion(g) for g in result.generations]
    else:
        completions = []
        for choice in choices:
            content = choice["message"].get("content") or ""
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                logprobs = logprobs.get("content")
            completions.append(Completion(text=content if isinstance(content, str) else str(content),
                                          finish_reason=choice.get("finish_reason"), logprobs=logprobs))  # fmt: skip
    token_usage = reply.get("usage") or {}
    used = Usage(llm_calls=len(completions), requests=1, input_tokens=int(token_usage.get("prompt_tokens") or 0),
                 output_tokens=int(token_usage.get("completion_tokens") or 0))  # fmt: skip
    facts = {"gen_ai.response.id": reply.get("id"), "gen_ai.response.model": reply.get("model") or model_label(model)}
    return completions, used, facts


def _chat_attributes(model: BaseChatModel, n: int, params: dict, bound: inflight.Limiter) -> dict[str, Any]:
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
        "magicore.inflight.bound": bound.limit,  # the bound this request was sent under
        "magicore.inflight.in_flight": bound.in_flight,
    }


def _record_response(span, messages, completions: list[Completion], used: Usage, facts: dict[str, Any]) -> None:
    attributes: dict[str, Any] = {
        **facts,
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
    supports_n = "n" in getattr(type(model), "model_fields", {})
    completions: list[Completion] = []
    usage = Usage()

    if n > 1 and supports_n and _n_honoured.get(model, True):
        got, used = await _request(model, messages, n, dict(params, seed=seed))
        usage += used
        if model not in _n_honoured:
            _n_honoured[model] = len(got) >= n
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
    return _n_honoured.get(model)
