"""Checkpointers that read magicore's state back: its pydantic types are registered with the
serializer, so LangGraph neither warns about nor (in later versions) refuses them."""

from __future__ import annotations

import contextlib
from pathlib import Path

#: The pydantic types a checkpoint of the graphs' state holds (allowed to be read back).
STATE_TYPES = [("magicore.agents.chain", "Chain"), ("magicore.agents.reviewer", "Review"),
               ("magicore.graphs.state", "Calibration"), ("magicore.graphs.state", "RouteDecision"),
               ("magicore.graphs.state", "Draft")]  # fmt: skip


@contextlib.asynccontextmanager
async def sqlite_checkpointer(path: Path):
    """A SQLite checkpointer that reads magicore's state types back without warnings."""
    import aiosqlite
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(str(path)) as conn:
        yield AsyncSqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))
