"""The OpenAI-compatible chat model magicore uses for every server but the OpenAI API itself.

`OpenAICompatibleChat` is ChatOpenAI with two changes: it sends `max_tokens` under that name
(servers other than OpenAI ignore `max_completion_tokens`), and non-streaming chat completions
go over one shared aiohttp session per event loop instead of the openai SDK's httpx client.
Hand-written because no library offers the SDK's behaviour at this cost: measured on the overhead
benchmark (docs/bench.md), the SDK path spends about 5 ms of CPU per request, this one under 1.
Failures are raised as the openai SDK's exception types with its retry rules, except those
it can say more about (a timeout with the time spent, a connection closed mid-response, an
embedded server that stopped), which are ModelErrors.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Literal

from langchain_openai import ChatOpenAI
from pydantic import Field

from magicore.tools import inflight
from magicore.tools.errors import ModelError
from magicore.tools.loop_local import LoopLocal


class OpenAICompatibleChat(ChatOpenAI):
    """ChatOpenAI that sends `max_tokens` as `max_tokens`, over a lean HTTP transport.

    ChatOpenAI renames it `max_completion_tokens` (OpenAI's newer name), which
    llama-cpp-python's server and other OpenAI-compatible servers silently ignore, so a
    one-token judge query would generate a whole paragraph.

    Non-streaming chat completions go over one shared aiohttp session per event loop
    (`post_chat_completion`) instead of the openai SDK and httpx: measured on the overhead benchmark
    (docs/bench.md), the SDK path costs about 5 ms of CPU per request against under 1 ms, and
    that CPU sits on the critical path of every fan-out wave. Failures are raised as the openai
    SDK's exception types, so error handling is the same either way. `transport="openai"`
    keeps the SDK path; streaming and structured output always use it (and with it only the
    first of several replicas).
    """

    transport: Literal["aiohttp", "openai"] = "aiohttp"
    #: Every server of the model when several replicas serve it (agents/replicas.py), else empty.
    replica_urls: list[str] = Field(default_factory=list)
    #: Send concurrent chat completions that differ only in their messages as one request to
    #: vLLM's `/chat/completions/batch` (agents/coalesce.py); on for `vllm:` specs.
    coalesce: bool = False

    def _get_request_payload(self, input_, *, stop=None, **kwargs):
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        return payload

    def lean_payload(self, messages, **kwargs) -> dict | None:
        """The chat-completion body `_get_request_payload` would build, without LangChain's
        message objects, or None where only that path is right (streaming, structured output,
        tools, the Responses API, messages other than plain system/user/assistant text).

        `messages`: (role, text) pairs or LangChain messages. tools/llm.py posts it with
        `apost_lean` when no callback handler watches the call (see there)."""
        if self.transport != "aiohttp" or self.streaming or kwargs.get("stream") or "response_format" in kwargs:
            return None
        if "tools" in kwargs or "functions" in kwargs or self.rate_limiter is not None or _cached(self):
            return None  # LangChain's path applies its rate limiter and its cache
        converted = _plain_messages(messages)
        if converted is None:
            return None
        defaults = self._default_params
        if "max_completion_tokens" in defaults:  # ChatOpenAI's name for it; a call's own max_tokens wins
            defaults["max_tokens"] = defaults.pop("max_completion_tokens")
        payload = {**defaults, **kwargs}
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        if self._use_responses_api(payload):
            return None
        payload.pop("stream", None)
        payload["messages"] = converted
        return payload

    async def apost_lean(self, payload: dict) -> dict:
        """POST a `lean_payload` body (to the replicas when several serve the model) and return
        the checked reply."""
        return _checked_reply(self, await self._post(payload))

    async def _post(self, payload: dict) -> dict:
        if len(self.replica_urls) > 1:
            from magicore.agents.replicas import post_to_replicas

            return await post_to_replicas(self, payload)
        if self.coalesce:
            from magicore.agents.coalesce import coalescer

            return await (await coalescer(self)).post(payload)
        return await post_chat_completion(self, payload)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if self.transport != "aiohttp" or self.streaming or kwargs.get("stream") or "response_format" in kwargs:
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        payload.pop("stream", None)
        if self._use_responses_api(payload):
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        return self._create_chat_result(_checked_reply(self, await self._post(payload)), {})


#: LangChain message types and (role, text) roles as chat-completion roles: what
#: langchain-openai's `_convert_message_to_dict` sends for plain text messages.
_ROLES = {"system": "system", "human": "user", "user": "user", "ai": "assistant", "assistant": "assistant"}


def _cached(model: ChatOpenAI) -> bool:
    """Whether `agenerate` would look the call up in a LangChain cache."""
    if model.cache is False:
        return False
    if model.cache is not None:
        return True
    from langchain_core.globals import get_llm_cache

    return get_llm_cache() is not None


def _plain_messages(messages) -> list[dict] | None:
    """[{"role", "content"}] for plain text messages, else None (names, tool calls, images and
    other fields go through langchain-openai's converter)."""
    out = []
    for m in messages:
        if isinstance(m, tuple):
            if len(m) != 2 or not isinstance(m[1], str) or m[0] not in _ROLES:
                return None
            out.append({"role": _ROLES[m[0]], "content": m[1]})
            continue
        kind = getattr(m, "type", None)
        if (kind not in ("system", "human", "ai") or not isinstance(m.content, str) or m.name
                or m.additional_kwargs or getattr(m, "tool_calls", None) or getattr(m, "invalid_tool_calls", None)):  # fmt: skip
            return None
        out.append({"role": _ROLES[kind], "content": m.content})
    return out


# The lean transport: one aiohttp session per event loop, openai's retry rules and error types.

RETRY_STATUS = frozenset({408, 409, 429})


def _new_session():
    import aiohttp

    # No total limit: tools/llm.py bounds the requests in flight per server.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))


#: The running loop's session, closed and forgotten when the loop finishes.
_sessions: LoopLocal = LoopLocal(_new_session, close=lambda session: session.close(),
                                 usable=lambda session: not session.closed)


async def _shared_session():
    return await _sessions.get()


def httpx_module():
    """The httpx the installed openai SDK builds its exceptions on (httpx, or its httpx2 fork)."""
    import openai._exceptions as ex

    return getattr(ex, "httpx2", None) or getattr(ex, "httpx")


def _timeout_seconds(timeout) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)):
        return float(timeout)
    if isinstance(timeout, tuple):
        return float(max(t for t in timeout if t is not None)) if any(t is not None for t in timeout) else None
    values = [getattr(timeout, name, None) for name in ("read", "connect", "write", "pool")]
    values = [v for v in values if v is not None]
    return float(max(values)) if values else None


def request_parts(model: ChatOpenAI, payload: dict) -> tuple[bytes, dict, object, int]:
    """The body, headers, aiohttp timeout and number of attempts of a chat completion request."""
    import aiohttp

    key = model.openai_api_key.get_secret_value() if model.openai_api_key else "not-needed"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(model.default_headers or {})}
    timeout = aiohttp.ClientTimeout(total=_timeout_seconds(model.request_timeout))
    return json.dumps(payload).encode(), headers, timeout, max(0, int(model.max_retries or 0)) + 1


async def post_once(session, url: str, body: bytes, headers: dict, timeout) -> tuple[int, bytes, dict]:
    """One POST: (status, body, headers); raises aiohttp.ClientError or asyncio.TimeoutError."""
    async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
        return response.status, await response.read(), dict(response.headers)


def timeout_error(url: str) -> Exception:
    import openai

    return openai.APITimeoutError(request=httpx_module().Request("POST", url))


def connection_error(url: str, error: BaseException) -> Exception:
    import openai

    return openai.APIConnectionError(message=f"Connection error: {error}",
                                     request=httpx_module().Request("POST", url))  # fmt: skip


def status_error(model: ChatOpenAI, url: str, status: int, raw: bytes, headers: dict) -> Exception:
    httpx = httpx_module()
    reply = httpx.Response(status, content=raw, headers=headers, request=httpx.Request("POST", url))
    return model.root_async_client._make_status_error_from_response(reply)


def retry_delay(attempt: int) -> float:
    return min(0.5 * 2**attempt, 8.0)


async def post_chat_completion(model: ChatOpenAI, payload: dict, *, path: str = "/chat/completions") -> dict:
    """POST /chat/completions (or `path`) and return the JSON body, retrying as the openai SDK does
    (connection errors, timeouts, 408/409/429/5xx; `max_retries` times with backoff, or after
    the server's Retry-After) and raising its exception types (APIStatusError, ...).

    The model's timeout bounds the whole call, its retries and waits included, so a server that
    hangs or drips fails once, after that time, with a ModelError that says how long it took; a
    connection that closes mid-response and an embedded server that stopped say so too.
    """
    import aiohttp

    url = f"{str(model.openai_api_base).rstrip('/')}{path}"
    key = model.openai_api_key.get_secret_value() if model.openai_api_key else "not-needed"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(model.default_headers or {})}
    body = json.dumps(payload).encode()
    budget = _timeout_seconds(model.request_timeout)
    started = time.monotonic()
    session = await _shared_session()
    attempts = max(0, int(model.max_retries or 0)) + 1
    failure: Exception | None = None  # the last try's error, raised when no time is left for another

    def left() -> float | None:
        return None if budget is None else budget - (time.monotonic() - started)

    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        wait = min(0.5 * 2 ** (attempt - 1), 8.0)
        try:
            timeout = aiohttp.ClientTimeout(total=left())
            async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
                raw = await response.read()
                status = response.status
                response_headers = dict(response.headers)
        except asyncio.TimeoutError:
            if last or budget is not None:  # the whole budget is spent
                raise _timed_out(model, budget, attempt, started) from None
        except aiohttp.ClientError as error:
            failure = _connection_error(model, error, attempt, started)
            if last:
                raise failure from error
        else:
            if status < 400:
                return json.loads(raw)
            inflight.push_back(status)  # a 429 or 503 lowers the bound before the retry
            httpx = httpx_module()
            reply = httpx.Response(status, content=raw, headers=response_headers, request=httpx.Request("POST", url))
            failure = model.root_async_client._make_status_error_from_response(reply)
            if last or not (status in RETRY_STATUS or status >= 500):
                raise failure
            asked = model.root_async_client._parse_retry_after_header(reply.headers)  # the SDK's reading
            if asked is not None and math.isfinite(asked) and asked > 0:
                if budget is not None and asked > left():
                    raise ModelError(
                        f"the model server at {model.openai_api_base} answered HTTP {status} and asked to "
                        f"retry after {asked:g} s, more than the {max(left(), 0):.1f} s left of the {budget:g} s "
                        f"timeout (--timeout)", transient=False, status=status, retry_after=asked)  # fmt: skip
                wait = asked
        if budget is not None and wait >= left():
            raise failure  # no time left for another try: the last try's error says what happened
        await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def _checked_reply(model: ChatOpenAI, response) -> dict:
    """The reply, if it is a chat completion with at least one choice; else a ModelError."""
    where = model.openai_api_base
    if not isinstance(response, dict):
        raise ModelError(f"the model server at {where} sent a reply that is not a chat completion")
    if response.get("error"):
        raise ModelError(f"the model server at {where} sent an error: {str(response['error'])[:200]}")
    choices = response.get("choices")
    if not isinstance(choices, list):
        raise ModelError(f"the model server at {where} sent a reply without `choices`")
    if not choices or not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices):
        kind = "no" if not choices else "malformed"
        raise ModelError(f"the model server at {where} sent a reply with {kind} choices")
    return response


def _timed_out(model: ChatOpenAI, budget: float | None, tries: int, started: float) -> ModelError:
    elapsed = time.monotonic() - started
    limit = f"the {budget:g} s timeout (--timeout)" if budget is not None else "the time allowed"
    return ModelError(
        f"the model server at {model.openai_api_base} did not answer within {limit}: "
        f"{tries} {'try' if tries == 1 else 'tries'}, {elapsed:.1f} s in all",
        transient=False,  # the time is spent: trying the node again would double it
    )


def _connection_error(model: ChatOpenAI, error: Exception, tries: int, started: float) -> Exception:
    import aiohttp
    import openai

    where = model.openai_api_base
    stopped = _embedded_stopped(model)
    if stopped:
        return ModelError(stopped)
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return ModelError(f"the model server at {where} closed the connection before its response was complete "
                          f"({tries} {'try' if tries == 1 else 'tries'}, {time.monotonic() - started:.1f} s)",
                          transient=True)  # fmt: skip
    return openai.APIConnectionError(message=f"Connection error: {error}",
                                     request=httpx_module().Request("POST", f"{where}/chat/completions"))


def _embedded_stopped(model: ChatOpenAI) -> str | None:
    """What to say when the model is served by an embedded server that has exited."""
    if (model.metadata or {}).get("magicore_provider") != "llama.cpp":
        return None
    from magicore.agents.embedded import stopped_server_message

    return stopped_server_message(str(model.openai_api_base))
