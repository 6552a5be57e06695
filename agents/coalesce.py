"""Chat completions sent together: one POST /v1/chat/completions/batch for a wave's requests.

A MAgICoRe round sends one review and one refinement per chain, each from its own graph branch;
16 problems at k = 32 make waves of 512 requests, and at that scale the client's cost per HTTP
request (building, sending and reading it, about a quarter of magicore's CPU per request) and the
server's own per-request work add up. vLLM serves `POST /v1/chat/completions/batch`
(vllm-project/vllm#38011; in vLLM 0.32): the body of a chat completion whose `messages` is a
list of conversations (with `n` = 1), answered with one choice per conversation, `choices[i].index`
naming its conversation, and the usage of the whole batch. A call asking for n > 1 (the Solver's
one request per question) is sent alone.

`Coalescer.post` takes the body of one chat completion and returns the reply to it, as
`post_chat_completion` does. Bodies that differ only in their messages, arriving while the
event loop is busy (a wave's branches start one after another without waiting), go out as one
batch as soon as the loop has run an iteration without a new one (or after `MAX_WAIT`). The
graph does not change: each branch still makes its own call, holds its own in-flight slot
(tools/inflight.py bounds conversations, not HTTP requests), keeps its span, its node's
RetryPolicy and its checkpoint; the HTTP retries are the batch's.

What a batch cannot say is each conversation's usage: the server reports the batch's prompt and
completion tokens in total, and each reply carries a share in proportion to the characters of its
prompt and of its completions. So that every figure magicore reports stays exact, a batch never
mixes calls that are counted apart: calls join only calls of the same run, of the same graph node
(whose calls are counted under one role) and of the same `track_usage` scopes. A run is a
`run_scope` (which `asolve`, `magicore bench` and the chat app open around each question, and the
paired sampler around each chain), else the LangGraph thread the call runs in (`thread_id`; the
LangGraph server gives every run one); a call in neither is sent alone. Only spans' per-call token
counts (the `chat` span's, and the Reviewer's or Refiner's span around it) are shares.

A server without the endpoint answers 404, 405 or 501: the coalescer sends those bodies one by one
and does not batch for that model again. A batch the server refuses (another 4xx: one
conversation too long fails vLLM's whole batch) or fails (a 5xx after the retries: vLLM fails a
whole batch for one conversation's error) is sent again one call at a time, so only a bad one
fails; if after a 400 or 422 every call goes through alone, the endpoint refuses those
parameters, and calls with them are sent alone from then on. A timeout, a connection failure, a
429 or a 503 after the retries reaches every call of the batch. The batch shares one timeout
budget and one set of retries: a conversation that writes for longer than the timeout fails its
batch's others too. A call cancelled while it waits leaves the others of its batch answered;
when every call of a batch has been cancelled, its request is stopped, as a cancelled call's
own request would be.

Hand-written: LangChain and the openai SDK send one conversation per request, and this has to
sit under the graph's branches (a batching Runnable would need the wave in one node).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import json
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

from magicore.tools.loop_local import LoopLocal
from magicore.tools.usage import active_handlers

#: The largest batch: vLLM's default max_num_seqs, beyond which it queues anyway.
MAX_BATCH = 256
#: The longest a body waits for others (seconds): a batch goes out when the loop has run an
#: iteration without a new member, or when its first member has waited this long, so a steady
#: stream of calls (many problems at different stages) is not held back.
MAX_WAIT = 0.01
#: Request fields not batched: vLLM's batch endpoint refuses tools and streaming, and structured
#: output goes through LangChain's own path anyway.
_UNBATCHABLE = ("tools", "functions", "tool_choice", "stream", "response_format")


@dataclass
class _Pending:
    messages: list
    future: asyncio.Future
    batch: list[_Pending] | None = None  # the members it was sent with
    task: asyncio.Task | None = None  # the task sending them


@dataclass
class _Group:
    params: dict
    described: str  # `params` as sorted JSON: what a refusal of them is remembered by
    opened: float  # the loop's time at its first member
    members: list[_Pending] = field(default_factory=list)
    seen: int = 0  # members when the last flush check was scheduled


@dataclass
class Stats:
    """What the coalescer did on this loop (bench-overhead prints it)."""

    batches: int = 0
    batched: int = 0  # conversations sent in batches of two or more
    single: int = 0  # conversations sent alone
    fallbacks: int = 0  # batches sent again one by one

    @property
    def saved(self) -> int:
        """HTTP requests batching saved: calls made minus this is what went over the wire."""
        return self.batched - self.batches


class Coalescer:
    """Batches one model's chat completions on one event loop (`coalescer(model)`)."""

    def __init__(self, model) -> None:
        self._model = weakref.ref(model)  # the per-loop table must not keep a model alive
        self.supported = True  # until the server says it has no batch endpoint
        self.stats = Stats()
        self._groups: dict[str, _Group] = {}
        self._tasks: set[asyncio.Task] = set()
        self._refused: set[str] = set()  # parameters the batch endpoint refused and single calls took

    @property
    def model(self):
        model = self._model()
        if model is None:  # pragma: no cover - a call in flight holds its model
            raise RuntimeError("the model of this coalescer is gone")
        return model

    async def post(self, payload: dict) -> dict:
        """The reply to one chat completion body, sent in a batch where others join it."""
        from magicore.agents.transport import post_chat_completion

        if not self.supported or (payload.get("n") or 1) > 1 or any(name in payload for name in _UNBATCHABLE):
            return await post_chat_completion(self.model, payload)  # vLLM batches n = 1 only
        config = _config()
        run = _run(config)
        params = {name: value for name, value in payload.items() if name != "messages"}
        described = json.dumps(params, sort_keys=True, default=str)
        if run is None or described in self._refused:  # no run to keep its usage apart: alone
            return await post_chat_completion(self.model, payload)
        # never mix calls counted apart: runs, graph nodes, `track_usage` scopes
        node = (config.get("metadata") or {}).get("langgraph_node")  # a node's calls count under one role
        key = f"{run} {node} {id(active_handlers())} {described}"
        loop = asyncio.get_running_loop()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(params, described, loop.time())
            loop.call_soon(self._check, key, group)
        pending = _Pending(payload["messages"], loop.create_future())
        group.members.append(pending)
        if len(group.members) >= MAX_BATCH or loop.time() - group.opened >= MAX_WAIT:
            self._flush(key, group)  # full, or the first has waited long enough: the server can start
        try:
            return await pending.future
        except asyncio.CancelledError:
            # the last of its batch to leave stops the request, as a cancelled call's own would stop
            if pending.task is not None and all(m.future.cancelled() for m in pending.batch or ()):
                pending.task.cancel()
            raise

    def _check(self, key: str, group: _Group) -> None:
        """Send the group once an iteration of the loop has passed without a new member."""
        if self._groups.get(key) is not group:
            return  # already sent (it was full)
        loop = asyncio.get_running_loop()
        if len(group.members) > group.seen and loop.time() - group.opened < MAX_WAIT:
            group.seen = len(group.members)
            loop.call_soon(self._check, key, group)
            return
        self._flush(key, group)

    def _flush(self, key: str, group: _Group) -> None:
        self._groups.pop(key, None)
        members = [m for m in group.members if not m.future.done()]  # a cancelled branch left
        if not members:
            return
        task = asyncio.ensure_future(self._send(group, members))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        for m in members:
            m.batch, m.task = members, task

    async def _send(self, group: _Group, members: list[_Pending]) -> None:
        from magicore.agents.transport import post_chat_completion

        params = group.params
        try:
            if len(members) == 1 or not self.supported:
                await self._one_by_one(params, members)
                return
            try:
                reply = await post_chat_completion(self.model, {**params, "messages": [m.messages for m in members]},
                                                   path="/chat/completions/batch")  # fmt: skip
            except Exception as error:
                status = getattr(error, "status_code", None) or getattr(error, "status", None)
                if status in (404, 405, 501):
                    self.supported = False  # no batch endpoint here: one by one from now on
                if isinstance(status, int) and status >= 400 and status not in (408, 429, 503):
                    # refused, or failed by the server (vLLM fails a whole batch for one
                    # conversation's error): each call alone, so only a bad one fails
                    self.stats.fallbacks += 1
                    if await self._one_by_one(params, members) and status in (400, 422):
                        # every call went through alone: the endpoint refuses these parameters
                        self._refused.add(group.described)
                    return
                for m in members:  # timed out, unreachable or busy: what each call would have met
                    _settle(m.future, error=_own_copy(error))
                return
            self.stats.batches += 1
            self.stats.batched += len(members)
            for m, part in zip(members, split_reply(reply, [m.messages for m in members]), strict=True):
                _settle(m.future, result=part)
        except BaseException as error:  # never leave a branch waiting
            for m in members:
                _settle(m.future, error=_own_copy(error) if isinstance(error, Exception) else asyncio.CancelledError())
            if not isinstance(error, Exception):
                raise

    async def _one_by_one(self, params: dict, members: list[_Pending]) -> bool:
        """Send each member alone; whether every one was answered."""
        from magicore.agents.transport import post_chat_completion

        async def one(m: _Pending) -> bool:
            if m.future.done():  # its call was cancelled
                return False
            try:
                _settle(m.future, result=await post_chat_completion(self.model, {**params, "messages": m.messages}))
                return True
            except Exception as error:
                _settle(m.future, error=error)
                return False

        self.stats.single += len(members)
        return all(await asyncio.gather(*(one(m) for m in members)))


def _own_copy(error: Exception) -> Exception:
    """A copy of `error` for one call (LangGraph adds a note to the error each branch raises), or
    the error itself where it cannot be copied (the openai SDK's: tools/llm.py wraps those in a
    new ModelError per call)."""
    from magicore.tools.errors import ModelError

    return copy.copy(error) if isinstance(error, ModelError) else error


def _settle(future: asyncio.Future, *, result=None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def split_reply(reply: dict, conversations: list[list]) -> list[dict]:
    """One chat-completion reply per conversation of a batch reply: its choices (renumbered from
    0) and its share of the usage. A ModelError when a choice names no conversation of the batch."""
    from magicore.tools.errors import ModelError

    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list):
        raise ModelError("the model server sent a batch reply without `choices`")
    per: list[list[dict]] = [[] for _ in conversations]
    for choice in choices:
        index = choice.get("index") if isinstance(choice, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(conversations):
            raise ModelError(f"the model server sent a batch reply with a choice for conversation {index!r} "
                             f"of {len(conversations)}")  # fmt: skip
        choice["index"] = len(per[index])  # its place among its own conversation's choices
        per[index].append(choice)
    usage = reply.get("usage") or {}
    prompt_share = _shares(int(usage.get("prompt_tokens") or 0), [_chars(c) for c in conversations])
    completion_share = _shares(int(usage.get("completion_tokens") or 0),
                               [sum(len(str((c.get("message") or {}).get("content") or "")) for c in own)
                                for own in per])  # fmt: skip
    out = []
    for i, own in enumerate(per):
        out.append({
            "id": reply.get("id"),
            "object": "chat.completion",
            "model": reply.get("model"),
            "choices": own,
            "usage": {"prompt_tokens": prompt_share[i], "completion_tokens": completion_share[i],
                      "total_tokens": prompt_share[i] + completion_share[i]},
        })  # fmt: skip
    return out


def _chars(messages: list) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages if isinstance(m, dict))


def _shares(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (equally where all are 0), summing to `total`
    (largest remainders)."""
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    exact = [total * w / weight_sum for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


class _Run:
    """One run's identity (an object, so that two runs never share it)."""


_scope: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("magicore_coalesce_run", default=None)


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """Calls made inside (and in the tasks it starts) are batched only with each other."""
    token = _scope.set(_Run())
    try:
        yield
    finally:
        _scope.reset(token)


def _config() -> dict:
    """The LangChain/LangGraph run config the call is made in (empty outside any run)."""
    from langchain_core.runnables.config import var_child_runnable_config

    return var_child_runnable_config.get() or {}


def _run(config: dict) -> str | None:
    """The run the call belongs to: a `run_scope`, else the LangGraph thread it runs in (the
    LangGraph server gives every run one), else None (the call is sent alone)."""
    scope = _scope.get()
    if scope is not None:
        return f"scope {id(scope)}"
    thread = (config.get("configurable") or {}).get("thread_id")
    return None if thread is None else f"thread {thread}"


#: Per event loop: {id(model): its coalescer}; an entry goes when its model does.
_coalescers: LoopLocal[dict[int, Coalescer]] = LoopLocal(dict)


async def coalescer(model) -> Coalescer:
    """The running loop's coalescer for `model`."""
    per_loop = await _coalescers.get()
    found = per_loop.get(id(model))
    if found is None or found._model() is not model:
        found = per_loop[id(model)] = Coalescer(model)
        weakref.finalize(model, per_loop.pop, id(model), None)
    return found
