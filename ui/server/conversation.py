"""Conversations: each one a LangGraph thread whose state is its list of messages, kept by a
checkpointer (the chat app's kind): SQLite by default, Postgres for servers that share state.

With Postgres, every server process reads and writes the same threads, so a conversation
started on one replica continues on another. The conversation id is the thread id and the
tracing session id.

    async with open_checkpointer("postgres://user@host/db") as saver:
        store = Conversations(saver)
        await store.append("c1", [{"role": "user", "content": "..."}, ...])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph

from magicore.tools.errors import InputError, SetupError

log = logging.getLogger("magicore.serve")

#: Any 64-bit number that identifies magicore's table setup among Postgres advisory locks.
_SETUP_LOCK = 0x6D61_6769_636F_7265


def _append_turns(state: list, writes: list[list]) -> list:
    """DeltaChannel's reducer: the writes (each a list of turns) appended in order."""
    out = list(state)
    for write in writes:
        out.extend(write)
    return out


# A checkpoint stores only the turns it added (a full copy every 100 appends): with the plain
# list reducer every checkpoint held the whole conversation again, and 400 turns of 1 KB took
# 81 MB of SQLite (1.5 MB this way). Blobs the plain reducer wrote read back as they are, so
# existing conversations continue. (langgraph before 1.2.9 dropped a new thread's first write
# and never took the snapshots: pyproject requires 1.2.9.)
_MESSAGES = DeltaChannel(_append_turns, snapshot_frequency=100)


class ConversationState(TypedDict, total=False):
    # each turn wrapped as {"turn": message}: a DeltaChannel turns a bare message dict written
    # to it into a LangChain message object
    messages: Annotated[list[dict], _MESSAGES]


def new_id() -> str:
    return f"conv-{uuid.uuid4().hex[:16]}"


def default_checkpoint() -> str:
    """sqlite:$MAGICORE_HOME/serve/conversations.sqlite (MAGICORE_HOME: ~/.cache/magicore)."""
    home = os.environ.get("MAGICORE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "magicore"
    )
    return "sqlite:" + str(Path(home) / "serve" / "conversations.sqlite")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


@contextlib.asynccontextmanager
async def open_checkpointer(target: str) -> AsyncIterator:
    """A LangGraph checkpointer for `target`: postgres://... or postgresql://..., sqlite:PATH or
    a PATH, or memory (nothing kept after the process ends)."""
    target = target.strip()
    if target == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    elif target.startswith(("postgres://", "postgresql://")):
        async with _postgres(target) as saver:
            yield saver
    else:
        async with _sqlite(Path(target.removeprefix("sqlite:")).expanduser()) as saver:
            yield saver


@contextlib.asynccontextmanager
async def _sqlite(path: Path) -> AsyncIterator:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path))
    except (OSError, aiosqlite.Error) as error:
        raise InputError(f"cannot open the conversation store {path}: {error}") from None
    try:
        # Write-ahead logging, synced at checkpoints: a turn costs one append to the log instead of
        # a synced rewrite, and readers never wait for the writer. A turn survives the server
        # crashing; the latest ones may be lost if the machine loses power.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _postgres(url: str) -> AsyncIterator:
    try:
        import psycopg
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool
    except ImportError:
        raise SetupError("a Postgres conversation store needs: pip install 'magicore[postgres]'") from None

    try:  # one connection first: its error says why (the pool's would only say it timed out)
        probe = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
        await probe.close()
    except psycopg.Error as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise SetupError(f"cannot connect to the conversation store {redact(url)}: {reason}") from None
    # AsyncPostgresSaver needs autocommit connections that return rows as dicts.
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    pool = AsyncConnectionPool(url, min_size=1, max_size=10, kwargs=kwargs, open=False)
    await pool.open(wait=True, timeout=30)
    try:
        saver = AsyncPostgresSaver(pool)
        # Replicas starting together would race to create the tables: one sets up at a time.
        # The lock is polled, not waited for: the setup builds indexes CONCURRENTLY, which waits
        # for every statement in progress, and a replica blocked in pg_advisory_lock would be one
        # (a deadlock Postgres cannot see, the lock being held by another connection).
        async with pool.connection() as conn:
            while not await _try_lock(conn):
                await asyncio.sleep(0.2)
            try:
                await saver.setup()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
        yield saver
    finally:
        await pool.close()


async def _try_lock(conn) -> bool:
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_SETUP_LOCK,))
    return bool((await cursor.fetchone())["ok"])


class Conversations:
    """The messages of every conversation, through a one-node LangGraph graph whose state is the
    message list (appended to, never rewritten)."""

    def __init__(self, checkpointer):
        async def turn(_state: ConversationState) -> dict:
            return {}

        graph = StateGraph(ConversationState)
        graph.add_node("turn", turn)
        graph.add_edge(START, "turn")
        graph.add_edge("turn", END)
        self.graph = graph.compile(checkpointer=checkpointer, name="magicore-conversation")

    @staticmethod
    def _config(conversation_id: str) -> dict:
        return {"configurable": {"thread_id": conversation_id}}

    async def history(self, conversation_id: str) -> list[dict]:
        state = await self.graph.aget_state(self._config(conversation_id))
        return [m["turn"] if set(m) == {"turn"} else m  # unwrapped; older stores kept bare dicts
                for m in state.values.get("messages") or []]  # fmt: skip

    async def append(self, conversation_id: str, messages: list[dict]) -> None:
        await self.graph.aupdate_state(self._config(conversation_id),
                                       {"messages": [{"turn": m} for m in messages]}, as_node="turn")  # fmt: skip


@lru_cache(maxsize=1)
def _template():
    from jinja2 import Environment, StrictUndefined

    from magicore.tools.templates import load

    return Environment(undefined=StrictUndefined, autoescape=False).from_string(
        load("magicore.ui", "conversation")["template"]
    )


def compose(turns: list[dict], question: str, max_chars: int) -> str:
    """The question with as many of the latest earlier turns as fit in `max_chars` (oldest
    dropped first); the bare question when there are none or none fit."""
    turns = [t for t in turns if t.get("role") in ("user", "assistant") and str(t.get("content") or "").strip()]

    def render(start: int) -> str:
        return _template().render(turns=turns[start:], question=question).strip()

    # the text only shortens as older turns are dropped: the first start that fits, by bisection
    # (a render per halving, not per turn: a long conversation cost a second of the event loop)
    low, high = 0, len(turns)
    while low < high:
        middle = (low + high) // 2
        if len(render(middle)) <= max_chars:
            high = middle
        else:
            low = middle + 1
    if low == len(turns):
        return question
    return render(low)
