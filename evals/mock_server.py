"""A local OpenAI-compatible chat server with a fixed latency and token rate, on loopback.

Used by the overhead benchmark (every method's wall time against the model's critical path)
and by tests that need a real HTTP server: it can honour or ignore `n`, and fail on purpose
(HTTP 500, HTTP 429 with Retry-After, hanging past a client's timeout, dripping bytes, malformed
JSON, a reply without or with empty `choices`, a 1 MB completion, a connection closed
mid-response). Completions come from a function
of the request, by default a short numbered-step solution ending in \\boxed{42}.

    python -m magicore.evals.mock_server --port 8123 --latency 0.2
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Mode = Literal["ok", "error500", "rate_limited", "hang", "drip", "malformed", "no_choices", "empty_choices",
               "huge", "close", "empty"]  # fmt: skip
MODES: tuple[str, ...] = Mode.__args__
DEFAULT_REPLY = "Step 1: 40 + 2 = 42\nThe answer is \\boxed{42}."


@dataclass
class MockSettings:
    latency: float = 0.0  # seconds before the first token
    tokens_per_second: float | None = None  # None: the whole reply at once
    honour_n: bool = True
    mode: Mode = "ok"
    model: str = "mock-model"
    reply: Callable[[dict[str, Any], int], str] = lambda _req, _i: DEFAULT_REPLY
    retry_after: float = 1.0  # rate_limited: the Retry-After it sends
    failures: int | None = None  # rate_limited: how many requests it refuses (None: all)
    batch_endpoint: bool = True  # serve POST /v1/chat/completions/batch, as vLLM does
    reject_prompt_over: int | None = None  # a prompt of more words is refused (400; a whole batch with it)
    batch_refuses: tuple[str, ...] = ()  # request fields the batch endpoint refuses (400)
    batch_status: int | None = None  # the batch endpoint answers every request with this status
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Replies made while their client was still connected (a cancelled client's request, even one
    # that reaches the server after the cancel, is not among them), and requests being handled.
    answered: list[str] = field(default_factory=list)
    in_flight: int = 0
    generation: int = 0  # what clear() counts: requests from before it are not counted in these
    # the server's thread and the test's both touch these counts
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def clear(self) -> None:
        """Forget the requests seen so far, and those still being handled."""
        with self.lock:
            self.generation += 1
            self.requests.clear()
            self.answered.clear()
            self.in_flight = 0


def _huge(text: str) -> str:
    """About 1 MB of numbered steps before the reply: a runaway completion."""
    steps = "".join(f"Step {i}: 1 + 1 = 2, and so on and so forth, again and again.\n" for i in range(1, 16_001))
    return steps + text


def _error(message: str, status: int = 400, kind: str = "BadRequestError", headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind}}, status=status, headers=headers)


def _too_long() -> web.Response:
    return _error("a prompt is longer than the model's context")


class MockServer:
    """Runs the server in a background thread; use as a context manager."""

    def __init__(self, settings: MockSettings | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.settings = settings or MockSettings()
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._counter = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        if self.settings.batch_endpoint:
            app.router.add_post("/v1/chat/completions/batch", self._batch)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler) -> web.StreamResponse:
        s = self.settings
        with s.lock:
            generation = s.generation
            s.in_flight += 1
        try:
            response = await handler(request)
        finally:
            connected = request.transport is not None and not request.transport.is_closing()
            with s.lock:
                if s.generation == generation:
                    s.in_flight -= 1
                    if connected:
                        s.answered.append(request.path)
        return response

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.settings.model, "object": "model"}]})

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        """vLLM's batch endpoint (as in vLLM 0.32): `messages` is a list of conversations, `n`
        must be 1; the reply has a choice per conversation, each with its conversation's index,
        and the usage of all; one conversation the server refuses fails the whole batch."""
        s = self.settings
        body = await request.json()
        s.requests.append(body)
        conversations = body.get("messages")
        if not isinstance(conversations, list) or not all(isinstance(c, list) for c in conversations):
            return _error("messages must be a list of conversations")
        if s.batch_status is not None:
            return _error(f"batch endpoint answers {s.batch_status}", s.batch_status, "BatchError")
        refused = [name for name in ("stream", *s.batch_refuses) if body.get(name)]
        if (body.get("n") or 1) != 1:
            refused.insert(0, "n > 1")  # vLLM 0.32: "The n parameter must be 1"
        if refused:
            return _error(f"{refused[0]} is not supported in batch mode")
        failed = await self._failure(request)
        if failed is not None:
            return failed
        words = [sum(len(str(m.get("content", "")).split()) for m in c) for c in conversations]
        if s.reject_prompt_over is not None and max(words, default=0) > s.reject_prompt_over:
            return _too_long()
        texts = [[self._text({**body, "messages": c})] for c in conversations]
        out_tokens = [len(t.split()) for own in texts for t in own]
        delay = s.latency + (max(out_tokens, default=0) / s.tokens_per_second if s.tokens_per_second else 0.0)
        if delay:
            await asyncio.sleep(delay)
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                   for i, own in enumerate(texts) for t in own]  # fmt: skip
        return web.json_response({
            "id": f"chatcmpl-{self._counter}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", s.model), "choices": choices,
            "usage": {"prompt_tokens": sum(words), "completion_tokens": sum(out_tokens),
                      "total_tokens": sum(words) + sum(out_tokens)},
        })  # fmt: skip

    def _text(self, body: dict) -> str:
        s = self.settings
        text = "" if s.mode == "empty" else s.reply(body, self._counter)
        self._counter += 1
        return _huge(text) if s.mode == "huge" else text

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        s = self.settings
        body = await request.json()
        s.requests.append(body)
        failed = await self._failure(request)
        if failed is not None:
            return failed
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        if s.reject_prompt_over is not None and prompt_tokens > s.reject_prompt_over:
            return _too_long()
        n = int(body.get("n") or 1) if s.honour_n else 1
        texts = [self._text(body) for _ in range(n)]
        out_tokens = [len(t.split()) for t in texts]
        paced = s.tokens_per_second and not body.get("stream")  # a stream is paced as it is sent
        delay = s.latency + (max(out_tokens) / s.tokens_per_second if paced else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if body.get("stream"):
            return await self._stream(request, body, texts, prompt_tokens)
        return web.json_response(
            {
                "id": f"chatcmpl-{self._counter}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", s.model),
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                    for i, t in enumerate(texts)
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": sum(out_tokens),
                    "total_tokens": prompt_tokens + sum(out_tokens),
                },
            }
        )

    async def _failure(self, request: web.Request) -> web.StreamResponse | None:
        """The failure the server's mode asks for, or None to answer."""
        s = self.settings
        if s.mode == "hang":
            await asyncio.sleep(3600)
        if s.mode == "error500":
            return _error("model crashed", 500, "server_error")
        if s.mode == "rate_limited" and (s.failures is None or len(s.requests) <= s.failures):
            return _error("rate limit reached", 429, "rate_limit", {"Retry-After": f"{s.retry_after:g}"})
        if s.mode == "malformed":
            return web.Response(text="{this is not json", content_type="application/json")
        if s.mode in ("no_choices", "empty_choices"):
            reply: dict[str, Any] = {"id": "chatcmpl-0", "object": "chat.completion", "model": s.model}
            return web.json_response(reply | ({"choices": []} if s.mode == "empty_choices" else {}))
        if s.mode in ("drip", "close"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            if s.mode == "close":
                response.content_length = 1000  # promised, never sent: the client sees a cut reply
            await response.prepare(request)
            await response.write(b'{"id": "chatcmpl-0", ')
            if s.mode == "close":
                request.transport.close()
                return response
            try:
                for _ in range(3600):  # one byte a second, until the client gives up
                    await asyncio.sleep(1.0)
                    await response.write(b" ")
            except ConnectionError:
                pass
            return response
        return None

    async def _stream(self, request: web.Request, body: dict, texts: list[str], prompt_tokens: int):
        """The completions as server-sent events, a word per chunk (paced by tokens_per_second),
        then the finish reasons, the usage when `stream_options.include_usage` asks, and [DONE]."""
        s = self.settings
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": f"chatcmpl-{self._counter}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", s.model)}  # fmt: skip

        async def send(choices: list[dict], **extra) -> None:
            await response.write(f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n".encode())

        words = [t.split(" ") for t in texts]
        for step in range(max(len(w) for w in words)):
            for i, w in enumerate(words):
                if step < len(w):
                    piece = w[step] + (" " if step < len(w) - 1 else "")
                    delta = {"role": "assistant", "content": piece} if step == 0 else {"content": piece}
                    await send([{"index": i, "delta": delta, "finish_reason": None}])
            if s.tokens_per_second:
                await asyncio.sleep(1 / s.tokens_per_second)
        await send([{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(len(texts))])
        if (body.get("stream_options") or {}).get("include_usage"):
            completion = sum(len(t.split()) for t in texts)
            await send([], usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                  "total_tokens": prompt_tokens + completion})  # fmt: skip
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def __enter__(self) -> MockServer:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the mock server did not start")
        return self

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        # a hanging or dripping handler is cancelled at once on exit, not waited for
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.1)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--tokens-per-second", type=float, default=None)
    parser.add_argument("--ignore-n", action="store_true", help="return one choice whatever n is")
    parser.add_argument("--mode", choices=MODES, default="ok")
    args = parser.parse_args(argv)
    settings = MockSettings(args.latency, args.tokens_per_second, not args.ignore_n, args.mode)
    server = MockServer(settings, host=args.host, port=args.port)
    print(json.dumps({"base_url": f"http://{args.host}:{args.port}/v1"}), flush=True)
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
