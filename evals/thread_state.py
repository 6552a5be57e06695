"""Where a checkpointed problem stands, read from what the checkpointer committed.

LangGraph stores a finished node's writes at once and the checkpoint that follows a step only
when the step is over, so a crash can leave writes without their checkpoint. Its snapshot then
applies those writes to `values` and leaves the node out of `next`, so `next == ()` can mean
"finished" or "crashed mid-step". The tasks tell them apart: a finished thread has none, an
unfinished one lists every task of its step, with `result` set where the writes are stored.
Imports nothing from magicore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stage = Literal["new", "running", "paused", "done"]


@dataclass(frozen=True)
class ThreadState:
    """A thread's stage, and the nodes still to run in its current step.

    - "new": nothing committed; start it with its input.
    - "running": committed work remains; resume with `None` (stored writes are kept, so a
      node whose writes were stored never runs again).
    - "paused": stopped before `pause`, which has not run; resume with `None`.
    - "done": the graph reached its end; nothing waits and nothing is uncommitted.
    """

    stage: Stage
    waiting: tuple[str, ...] = ()
    passed_pause: bool = False  # the pause node has run (its writes are in the values)

    @property
    def needs_input(self) -> bool:
        return self.stage == "new"


def thread_state(snapshot, pause: str | None = None, passed: str | None = None) -> ThreadState:
    """The stage of the thread whose `StateSnapshot` (from `aget_state`) is given.

    Args:
        snapshot: the thread's latest snapshot.
        pause: the node an `interrupt_before` stops at, if any.
        passed: a state key that only `pause` (or a later node) writes; when it holds a value
            the pause node has run, so the thread is past it.
    """
    if not snapshot.tasks:  # nothing left in the committed step: never started, or at its end
        return ThreadState("done", passed_pause=True) if snapshot.created_at is not None else ThreadState("new")
    waiting = tuple(snapshot.next)  # the step's tasks without stored writes (failed ones included)
    stored = len(snapshot.tasks) - len(waiting)  # tasks that finished after the last checkpoint
    after = bool(passed and snapshot.values.get(passed))
    if pause is not None and not after and not stored and waiting == (pause,):
        return ThreadState("paused", waiting)
    return ThreadState("running", waiting, passed_pause=after)
