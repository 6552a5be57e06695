"""The Starlette application of `magicore serve`: `GET /health`, `GET /v1/models` and
`POST /v1/chat/completions`, in OpenAI's wire format.

A request is checked (key, body size, fields, the server's limits) before any model is called;
every failure is an OpenAI-style error (errors.py). A run holds one of `max_runs` slots; a full
server answers 429 with Retry-After. A client that goes away cancels its run, streaming or not.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import statistics
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from magicore.agents.questions import check_question
from magicore.ui.server import schema
from magicore.ui.server.conversation import Conversations, compose, new_id
from magicore.ui.server.errors import APIError, from_exception
from magicore.ui.server.methods import METHODS, Engine, Plan
from magicore.ui.server.progress import describe

log = logging.getLogger("magicore.serve")


class Slots:
    """At most `limit` runs at once; past that, 429 with a Retry-After from recent run times."""

    def __init__(self, limit: int):
        self.limit, self.active = limit, 0
        self._seconds: deque[float] = deque(maxlen=50)

    def acquire(self) -> None:
        if self.active >= self.limit:
            wait = max(1, math.ceil(statistics.median(self._seconds))) if self._seconds else 1
            runs = f"{self.limit} run{'s' if self.limit != 1 else ''}"
            raise APIError(429, f"the server is busy with {runs}, its limit; try again in {wait} s",
                           code="server_busy", headers={"Retry-After": str(wait)})  # fmt: skip
        self.active += 1

    def release(self, seconds: float | None = None) -> None:
        self.active -= 1
        if seconds is not None:
            self._seconds.append(seconds)


def _validation_message(error: ValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    kind, loc = first["type"], [str(p) for p in first.get("loc") or ()]
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    if not loc:
        return "the request body must be a JSON object with 'model' and 'messages'", None
    field, where = loc[0], ".".join(loc)
    if kind == "missing":
        return f"'{where}' is required", field
    got = json.dumps(first.get("input"), default=str)
    got = got if len(got) <= 60 else got[:57] + "..."
    msg = re.sub(r"^\w+ should", "should", first["msg"])  # "Input should be..." -> "should be..."
    return f"'{where}' {msg[0].lower() + msg[1:]}, got {got}", field


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = APIError(413, f"the request body is larger than this server's limit of {limit:,} bytes",
                       code="request_too_large")  # fmt: skip
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_big
    return bytes(body)


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection (after the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Service:
    """The routes' shared state: models and graphs, conversations, the key, the run slots."""

    def __init__(self, engine: Engine, conversations: Conversations, *, api_key: str | None = None):
        self.engine, self.conversations, self.api_key = engine, conversations, api_key or None
        self.slots = Slots(engine.limits.max_runs)
        self.started = int(time.time())
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # routes

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "runs": {"active": self.slots.active, "limit": self.slots.limit}})

    async def models(self, request: Request) -> Response:
        self.check_key(request)
        served = await self.engine.served_models()
        ids = list(METHODS) + [f"{name}/{model}" for model in served for name in METHODS]
        return JSONResponse(schema.model_list(ids, self.started))

    async def chat(self, request: Request) -> Response:
        self.check_key(request)
        limits = self.engine.limits
        body = await _read_body(request, limits.max_body_bytes)
        try:
            req = schema.ChatRequest.model_validate_json(body)
        except ValidationError as error:
            message, param = _validation_message(error)
            raise APIError(400, message, code="invalid_request", param=param) from None
        question, earlier = self._split(req)
        question = check_question(question, max_chars=limits.max_question_chars)
        plan = await self.engine.plan(req)
        self.slots.acquire()  # given back when the run ends, however it ends (Turn.start)
        turn = Turn(self, req, plan, question, earlier)
        if req.stream:
            from sse_starlette.sse import EventSourceResponse
            from starlette.background import BackgroundTask

            stream = turn.stream()  # starts the run now: a stream never iterated still ends it below
            return EventSourceResponse(stream, sep="\n", ping=15, background=BackgroundTask(turn.cancel))
        return await turn.respond(request)

    # helpers

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            raise APIError(401, "this server needs an API key: send the header 'Authorization: Bearer KEY'",
                           code="missing_api_key")  # fmt: skip
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise APIError(401, "the API key is not valid for this server", code="invalid_api_key")

    @staticmethod
    def _split(req: schema.ChatRequest) -> tuple[str, list[dict]]:
        last = req.messages[-1]
        if last.role != "user":
            raise APIError(400, f"the last message must be the user's question (role 'user'), not '{last.role}'",
                           code="invalid_request", param="messages")  # fmt: skip
        earlier = [{"role": m.role, "content": m.text()} for m in req.messages[:-1] if m.role in ("user", "assistant")]
        return last.text(), earlier

    def lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = self._locks[conversation_id] = asyncio.Lock()
        return lock


class Turn:
    """One question in a conversation: the run, and what is kept of it."""

    def __init__(self, service: Service, req: schema.ChatRequest, plan: Plan, question: str, earlier: list[dict]):
        self.service, self.req, self.plan = service, req, plan
        self.question, self.earlier = question, earlier
        self.conversation_id = req.conversation_id or new_id()
        self.id, self.created = schema.completion_id(), int(time.time())
        self.task: asyncio.Future | None = None

    def start(self, on_event: Callable[[dict], None] | None = None) -> asyncio.Future:
        """Start the run; its slot is given back when it ends (with its time, if it succeeded)."""
        started = time.perf_counter()
        self.task = task = asyncio.ensure_future(self.run(on_event))

        def release(_task: asyncio.Future) -> None:
            ok = not task.cancelled() and task.exception() is None
            self.service.slots.release(time.perf_counter() - started if ok else None)

        task.add_done_callback(release)
        return task

    async def cancel(self) -> None:
        """Cancel the run if it is still going, and wait until it has unwound."""
        if self.task is None or self.task.done():
            return
        if not self.task.cancelling():  # the stream's end and its background task both come here
            log.info("the client of %s went away; its run was cancelled", self.id)
            self.task.cancel()
        # asyncio.wait, not gather: sse-starlette's cancel scope cancels this coroutine again and
        # again, and gather would pass each of those on to the run (tools/cancellation.py)
        await asyncio.wait({self.task})

    async def run(self, on_event: Callable[[dict], None] | None = None):
        """Solve the question in its conversation's context and keep the turn; the RunResult."""
        from magicore.graphs.api import asolve

        limits, question = self.service.engine.limits, self.question
        store = self.service.conversations
        lock = self.service.lock(self.conversation_id) if self.req.conversation_id else asyncio.Lock()
        async with lock:
            history = await store.history(self.conversation_id) if self.req.conversation_id else []
            context = history or self.earlier
            composed = compose(context, question, limits.max_question_chars)
            steps = 12 + 6 * max(self.plan.config.rounds, self.plan.config.self_refine_rounds, 1)
            result = await asolve(composed, model=None, graph=self.plan.graph, session_id=self.conversation_id,
                                  on_event=on_event, run_config={"recursion_limit": steps})  # fmt: skip
            if self.req.store:
                kept = [] if history else list(self.earlier)
                kept += [{"role": "user", "content": question},
                         {"role": "assistant", "content": result.answer or "", "method": self.plan.method,
                          "trace_id": result.trace_id}]  # fmt: skip
                await store.append(self.conversation_id, kept)
        return result

    def facts(self, result) -> dict[str, Any]:
        facts = result.to_json()
        facts.update(conversation_id=self.conversation_id if self.req.store else None, model=self.plan.model_spec,
                     reward=self.plan.reward)  # fmt: skip
        if result.answer is None:
            facts["note"] = "no chain stated a parsable final answer"
        return facts

    async def respond(self, request: Request) -> Response:
        """The whole completion at once; the run is cancelled if the client goes away first."""
        run = self.start()
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            await self.cancel()
        if run.cancelled():
            return Response(status_code=499)  # nobody is listening
        result = run.result()  # raises the run's error, which the error handler answers
        body = schema.completion(self.id, self.plan.name, result.answer or "", result, self.facts(result))
        return JSONResponse(body)

    def _chunk(self, delta: dict | None = None, **extra: Any) -> dict:
        return {"data": json.dumps(schema.chunk(self.id, self.plan.name, self.created, delta, **extra))}

    def stream(self) -> AsyncIterator[dict]:
        """Start the run; its server-sent events: the role, progress as reasoning deltas, the
        answer, [DONE]."""
        events: asyncio.Queue = asyncio.Queue()
        run = self.start(events.put_nowait)
        done = object()
        run.add_done_callback(lambda _t: events.put_nowait(done))

        async def chunks() -> AsyncIterator[dict]:
            try:
                yield self._chunk({"role": "assistant", "content": ""})
                while (event := await events.get()) is not done:
                    text = describe(event)
                    if text:
                        yield self._chunk({"reasoning_content": text})
                if run.cancelled():
                    return
                if run.exception() is not None:
                    yield {"data": json.dumps(from_exception(run.exception()).body())}
                else:
                    result = run.result()
                    yield self._chunk({"content": result.answer or ""})
                    yield self._chunk({}, finish_reason="stop", magicore=self.facts(result))
                    if self.req.stream_options and self.req.stream_options.include_usage:
                        yield self._chunk(None, usage=schema.usage_block(result))
                yield {"data": "[DONE]"}
            finally:
                await self.cancel()

        return chunks()


def _http_error(_request: Request, error: HTTPException) -> Response:
    messages = {404: "no such endpoint: this server has GET /v1/models, POST /v1/chat/completions and GET /health",
                405: "this endpoint does not accept that HTTP method"}  # fmt: skip
    return APIError(error.status_code, messages.get(error.status_code, str(error.detail))).response()


def _api_error(_request: Request, error: Exception) -> Response:
    return from_exception(error).response()


def create_app(engine: Engine, conversations: Conversations, *, api_key: str | None = None) -> Starlette:
    service = Service(engine, conversations, api_key=api_key)
    routes = [Route("/health", service.health, methods=["GET"]),
              Route("/v1/models", service.models, methods=["GET"]),
              Route("/v1/chat/completions", service.chat, methods=["POST"])]  # fmt: skip
    from langgraph.errors import GraphRecursionError

    from magicore.tools.errors import MagicoreError

    # Known failures are answered here; anything else also reaches `Exception`, whose handler
    # answers the client and lets the server log the traceback (errors.from_exception logs it too).
    handlers = {HTTPException: _http_error, APIError: _api_error, MagicoreError: _api_error,
                GraphRecursionError: _api_error, Exception: _api_error}  # fmt: skip
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.service = service
    return app
