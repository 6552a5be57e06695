"""The async HTTP client of the openai SDK path: the OpenAI API itself, `transport="openai"`,
streamed calls and calls a callback handler watches (agents/transport.py sends the others).

One client for the process, shared by every model as langchain-openai shares its default
client, built on the SDK's own default client with two changes:

- a response hook reports every 429 or 503 to the in-flight bound (tools/inflight.py), the
  ones the SDK retries out of sight included; it reads the request's slot from its context, so
  sharing the client is safe;
- one connection pool per event loop: an httpx connection belongs to the loop that opened it,
  and a kept-alive one reused from another loop fails with "Event loop is closed".

Hand-written because httpx binds a pool to the first loop that uses it and offers nothing per
loop. A transport of one's own turns off httpx's reading of proxy settings, so the proxy of
each request is chosen here from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
`NO_PROXY`), as httpx would.
"""

from __future__ import annotations

import functools
import urllib.parse
import urllib.request

from magicore.agents.transport import httpx_module
from magicore.tools import inflight
from magicore.tools.loop_local import LoopLocal


@functools.cache
def sdk_async_client():
    """The process's client for the openai SDK path (see the module docstring)."""
    import openai

    return openai.DefaultAsyncHttpxClient(transport=_loop_local_transport(httpx_module()),
                                          event_hooks={"response": [_report_pushback]})  # fmt: skip


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (None: connect directly)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def _loop_local_transport(http):
    """An `http.AsyncBaseTransport` that sends each request through its event loop's own pool
    (one per proxy), made on the loop's first request with the SDK's connection limits and
    closed when the loop finishes."""
    import openai

    def pools() -> dict:
        return {}

    async def close(per_proxy: dict) -> None:
        for pool in per_proxy.values():
            await pool.aclose()

    class LoopLocalTransport(http.AsyncBaseTransport):
        def __init__(self):
            self.pools = LoopLocal(pools, close=close)

        async def handle_async_request(self, request):
            per_proxy = await self.pools.get()
            proxy = proxy_for(str(request.url))
            pool = per_proxy.get(proxy)
            if pool is None:
                pool = per_proxy[proxy] = http.AsyncHTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS, proxy=proxy)
            return await pool.handle_async_request(request)

        async def aclose(self) -> None:
            await self.pools.close_all()

    return LoopLocalTransport()


async def _report_pushback(response) -> None:
    inflight.push_back(response.status_code)  # does nothing outside a request's slot
