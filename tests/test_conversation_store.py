"""The conversation store of `magicore serve` on a real SQLite file: turns come back as the dicts
that were stored, a long conversation's file grows with its length (not with its square), and a
store written by the plain list reducer of earlier releases keeps working."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

from magicore.ui.server.conversation import Conversations, open_checkpointer


def turns(start: int, n: int) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "x" * 1000}
            for i in range(start, start + n)]  # fmt: skip


def size(path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def test_turns_come_back_as_stored_and_the_file_grows_linearly(tmp_path):
    path = tmp_path / "c.sqlite"
    async with open_checkpointer(f"sqlite:{path}") as saver:
        store = Conversations(saver)
        for i in range(0, 400, 2):
            await store.append("c1", turns(i, 2))
            if i == 198:
                at_200 = size(path)
        history = await store.history("c1")
    assert history == turns(0, 400)
    assert all(type(m) is dict for m in history)
    # 400 KB of text: the plain reducer stored the whole list at every turn (81 MB here)
    assert size(path) < 8 * 1024 * 1024
    assert size(path) < 3 * at_200  # twice the turns, about twice the bytes (a square would be 4x)
    async with open_checkpointer(f"sqlite:{path}") as saver:  # a restart reads it back
        assert await Conversations(saver).history("c1") == turns(0, 400)


class _Earlier(TypedDict, total=False):
    messages: Annotated[list[dict], operator.add]


async def test_a_store_written_by_the_plain_list_reducer_continues(tmp_path):
    path = tmp_path / "old.sqlite"
    config = {"configurable": {"thread_id": "c1"}}
    async with open_checkpointer(f"sqlite:{path}") as saver:
        graph = StateGraph(_Earlier)
        graph.add_node("turn", lambda _s: {})
        graph.add_edge(START, "turn")
        graph.add_edge("turn", END)
        old = graph.compile(checkpointer=saver)
        for i in range(0, 6, 2):
            await old.aupdate_state(config, {"messages": turns(i, 2)}, as_node="turn")
    async with open_checkpointer(f"sqlite:{path}") as saver:
        store = Conversations(saver)
        assert await store.history("c1") == turns(0, 6)
        await store.append("c1", turns(6, 2))
        assert await store.history("c1") == turns(0, 8)
