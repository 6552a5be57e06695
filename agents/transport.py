"""The OpenAI-compatible chat model magicore uses for every server but the OpenAI API itself.

`OpenAICompatibleChat` is ChatOpenAI with two changes: it sends `max_tokens` under that name
(servers other than OpenAI ignore `max_completion_tokens`), and non-streaming chat completions
go over one shared aiohttp session per event loop instead of the openai SDK's httpx client.
Hand-written because no library offers the SDK's behaviour at this cost: measured on the overhead
benchmark (docs/bench.md), the SDK path spends about 5 ms of CPU per request, this one under 1.
Failures are raised as the openai SDK's exception types with its retry rules.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Literal

from langchain_openai import ChatOpenAI


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
    keeps the SDK path; streaming and structured output always use it.
    """

    transport: Literal["aiohttp", "openai"] = "aiohttp"

    def _get_request_payload(self, input_, *, stop=None, **kwargs):
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        return payload

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if self.transport != "aiohttp" or self.streaming or kwargs.get("stream") or "response_format" in kwargs:
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        payload.pop("stream", None)
        if self._use_responses_api(payload):
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        response = await post_chat_completion(self, payload)
        return self._create_chat_result(response, {})


# The lean transport: one aiohttp session per event loop, openai's retry rules and error types.

#: Per event loop, by id(loop): (weak reference to the loop, its session, the keeper that closes
#: it). Not a WeakKeyDictionary keyed by the loop: the session holds its loop, so such an entry
#: would keep its own key alive and never go. The keeper drops the entry when the loop finishes.
_sessions: dict[int, tuple[weakref.ref, object, object]] = {}
_RETRY_STATUS = frozenset({408, 409, 429})


async def _session_keeper(key: int, session):
    """Holds a loop's session; `asyncio.run` finalizes async generators at shutdown
    (`loop.shutdown_asyncgens`), which closes the session and forgets it before its loop
    closes, so neither the session nor the loop outlives the run."""
    try:
        yield session
    finally:
        try:
            await session.close()
        finally:
            _forget(key, session)


def _forget(key: int, session) -> None:
    entry = _sessions.get(key)
    if entry is not None and entry[1] is session:
        _sessions.pop(key, None)


def _forget_finished_loops() -> None:
    """Drop the sessions of loops that closed without finalizing their async generators
    (`loop.close()` straight after `run_until_complete`): they can no longer be closed on their
    loop, so they are left to the garbage collector rather than kept forever."""
    for key, (loop_ref, session, _keeper) in list(_sessions.items()):
        loop = loop_ref()
        if loop is None or loop.is_closed():
            _forget(key, session)


async def _shared_session():
    import aiohttp

    loop = asyncio.get_running_loop()
    entry = _sessions.get(id(loop))
    if entry is not None and entry[0]() is loop and not entry[1].closed:
        return entry[1]
    _forget_finished_loops()
    # No total limit: tools/llm.py bounds the requests in flight per server.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
    keeper = _session_keeper(id(loop), session)
    _sessions[id(loop)] = (weakref.ref(loop), session, keeper)
    await keeper.__anext__()  # runs to the yield without suspending
    return session


def _httpx_module():
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


async def post_chat_completion(model: ChatOpenAI, payload: dict) -> dict:
    """POST /chat/completions and return the JSON body, retrying as the openai SDK does
    (connection errors, timeouts, 408/409/429/5xx; `max_retries` times with backoff) and
    raising its exception types (APIConnectionError, APITimeoutError, APIStatusError)."""
    import aiohttp
    import openai

    httpx = _httpx_module()
    url = f"{str(model.openai_api_base).rstrip('/')}/chat/completions"
    key = model.openai_api_key.get_secret_value() if model.openai_api_key else "not-needed"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(model.default_headers or {})}
    body = json.dumps(payload).encode()
    seconds = _timeout_seconds(model.request_timeout)
    timeout = aiohttp.ClientTimeout(total=seconds)
    session = await _shared_session()
    attempts = max(0, int(model.max_retries or 0)) + 1
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
                raw = await response.read()
                status = response.status
                response_headers = dict(response.headers)
        except asyncio.TimeoutError:
            if last:
                raise openai.APITimeoutError(request=httpx.Request("POST", url)) from None
        except aiohttp.ClientError as error:
            if last:
                raise openai.APIConnectionError(message=f"Connection error: {error}",
                                                request=httpx.Request("POST", url)) from error  # fmt: skip
        else:
            if status < 400:
                return json.loads(raw)
            if last or not (status in _RETRY_STATUS or status >= 500):
                reply = httpx.Response(status, content=raw, headers=response_headers,
                                       request=httpx.Request("POST", url))  # fmt: skip
                raise model.root_async_client._make_status_error_from_response(reply)
        await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
    raise AssertionError("unreachable")

