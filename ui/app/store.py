"""Conversations: a small chat graph whose state holds the messages, kept by LangGraph's SQLite
checkpointer, one thread per conversation id.

The chat graph has one node, `answer`, which runs the method graph (compiled without a
checkpointer of its own) through `asolve` and returns the question and the reply together. A
turn is therefore written whole or not at all: a stopped run leaves nothing behind but the
"stopped" note `record` adds. Everything here runs on the UI's event loop (runner.py).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from magicore.graphs.compat import with_config_context
from magicore.tools.errors import MagicoreError
from magicore.ui.app.progress import Progress

log = logging.getLogger(__name__)

DIR_ENV = "MAGICORE_UI_DIR"
DB_NAME = "conversations.sqlite"


def data_dir() -> Path:
    """$MAGICORE_UI_DIR, else $MAGICORE_HOME/ui, else ~/.cache/magicore/ui (XDG_CACHE_HOME)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    home = os.environ.get("MAGICORE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "magicore"
    )
    return Path(home) / "ui"


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class ChatState(TypedDict, total=False):
    question: str
    messages: Annotated[list[dict], operator.add]


@dataclass
class Turn:
    """One question and what to run it with."""

    question: str
    method_graph: Any = None  # from build_graph(..., checkpointer=False)
    meta: dict[str, Any] = field(default_factory=dict)  # shown with the answer: method, model...
    calibration: Any = None
    recursion_limit: int = 100
    trace: bool = False
    id: str = field(default_factory=new_id)

    def user_message(self) -> dict:
        return {"role": "user", "content": self.question, "turn": self.id}

    def reply(self, status: str, progress: Progress | None = None, **fields: Any) -> dict:
        return {"role": "assistant", "turn": self.id, "status": status, **self.meta, **fields,
                "panel": (progress or Progress()).to_dict()}  # fmt: skip


def describe(error: BaseException) -> str:
    """One readable sentence for the chat."""
    if isinstance(error, MagicoreError):
        return str(error)
    from langgraph.errors import GraphRecursionError

    if isinstance(error, GraphRecursionError):
        return "the run took more graph steps than allowed; try fewer rounds"
    return f"unexpected error: {type(error).__name__}: {error}"


def chat_graph(turn: Turn | None, checkpointer):
    """The chat graph; `turn` is None when it is only compiled to read or update history."""

    async def answer(state: ChatState) -> dict:
        from magicore.graphs.api import asolve
        from magicore.ui.app.tracing import untraced

        assert turn is not None, "a chat graph compiled without a turn cannot answer"
        writer, progress = get_stream_writer(), Progress()

        def on_event(event: dict) -> None:
            progress.apply(event)
            writer(event)

        def on_token(event: dict) -> None:  # the Solver's text as it is written: shown, not stored
            if event.get("role") == "solver":
                writer(event)

        tracing = untraced() if not turn.trace else contextlib.nullcontext()
        try:
            with tracing:
                result = await asolve(state["question"], model=None, graph=turn.method_graph, session_id=thread_of(),
                                      calibration=turn.calibration, on_event=on_event, on_token=on_token,
                                      run_config={"recursion_limit": turn.recursion_limit})  # fmt: skip
            reply = turn.reply("ok", progress, **result.to_json())
        except Exception as error:  # noqa: BLE001 - every failure becomes a readable chat message
            if not isinstance(error, MagicoreError):
                log.exception("the run failed")
            reply = turn.reply("error", progress, error=describe(error))
        return {"messages": [turn.user_message(), reply]}

    g = StateGraph(ChatState)
    g.add_node("answer", with_config_context(answer))  # Python 3.10: see graphs/compat.py
    g.add_edge(START, "answer")
    g.add_edge("answer", END)
    return g.compile(checkpointer=checkpointer, name="magicore-chat")


def thread_of() -> str | None:
    from langgraph.config import get_config

    return (get_config().get("configurable") or {}).get("thread_id")


@asynccontextmanager
async def open_saver(path: Path):
    """An AsyncSqliteSaver on a connection opened for one operation and closed after it."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = aiosqlite.connect(str(path))
    # aiosqlite's worker thread is not a daemon: one left open by a run in flight when the
    # server stops would keep the process alive. Every connection is closed below anyway.
    worker = getattr(conn, "_thread", None)
    if worker is not None:
        worker.daemon = True
    try:
        await conn
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver
    finally:
        await conn.close()


class ConversationStore:
    """The conversations in one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @staticmethod
    def config(thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    async def history(self, thread_id: str) -> list[dict]:
        async with open_saver(self.path) as saver:
            state = await chat_graph(None, saver).aget_state(self.config(thread_id))
        return list(state.values.get("messages") or [])

    async def run_turn(self, thread_id: str, turn: Turn, emit: Callable[[dict], None]) -> dict:
        """Answer `turn` in the conversation, streaming progress events to `emit`; the reply."""
        reply: dict | None = None
        async with open_saver(self.path) as saver:
            app = chat_graph(turn, saver)
            # durability="exit": the turn is written once, when it is over. A run cancelled while
            # LangGraph wrote an intermediate checkpoint could leave the file locked for seconds.
            async for mode, payload in app.astream({"question": turn.question}, self.config(thread_id),
                                                   stream_mode=["custom", "updates"], durability="exit"):  # fmt: skip
                if mode == "custom":
                    emit(payload)
                elif "answer" in payload:
                    reply = payload["answer"]["messages"][-1]
        assert reply is not None
        return reply

    async def record(self, thread_id: str, turn: Turn, reply: dict) -> bool:
        """Add a turn that did not run to the end (stopped, or failed before it started);
        False if the conversation already holds this turn."""
        async with open_saver(self.path) as saver:
            app = chat_graph(None, saver)
            config = self.config(thread_id)
            state = await app.aget_state(config)
            if any(m.get("turn") == turn.id for m in state.values.get("messages") or []):
                return False
            await app.aupdate_state(config, {"messages": [turn.user_message(), reply]}, as_node="answer")
        return True
