"""Checkpointers that read magicore's state back: its pydantic types are registered with the
serializer, so LangGraph neither warns about nor (in later versions) refuses them.

Any LangGraph saver takes the serializer:

    from langgraph.checkpoint.memory import InMemorySaver
    from magicore import serializer

    saver = InMemorySaver(serde=serializer())      # SqliteSaver(conn, serde=serializer()), ...

A parent graph that embeds a method graph checkpoints the subgraph's state with the parent's
saver, so the parent's saver needs it too; add the parent's own types as `allowed`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

#: The pydantic types a checkpoint of the graphs' state holds (allowed to be read back).
STATE_TYPES = [("magicore.agents.chain", "Chain"), ("magicore.agents.reviewer", "Review"),
               ("magicore.graphs.state", "Calibration"), ("magicore.graphs.state", "RouteDecision"),
               ("magicore.graphs.state", "Draft")]  # fmt: skip


def serializer(*allowed: tuple[str, str]):
    """LangGraph's serializer with magicore's state types (and `allowed`, more (module, name)
    pairs of your own) registered for reading back."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=[*STATE_TYPES, *allowed])


@contextlib.asynccontextmanager
async def sqlite_checkpointer(path: Path):
    """A SQLite checkpointer that reads magicore's state types back without warnings."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(str(path)) as conn:
        yield AsyncSqliteSaver(conn, serde=serializer())
