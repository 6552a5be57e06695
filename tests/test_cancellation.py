"""tools/cancellation.py: a cancellation passed on once, the caller waiting until the work has
unwound however often it is cancelled again (as anyio's cancel scopes do)."""

from __future__ import annotations

import asyncio

import pytest

from magicore.tools.cancellation import cancel_once


class Work:
    """Sleeps until cancelled, then takes a few turns of the loop to clean up."""

    def __init__(self):
        self.cancellations, self.cleaned = 0, False

    async def __call__(self) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cancellations += 1
            for _ in range(5):
                await asyncio.sleep(0)
            self.cleaned = True
            raise
        return "done"


async def test_the_result_comes_back_when_nobody_cancels():
    async def work():
        await asyncio.sleep(0)
        return 42

    assert await cancel_once(work()) == 42


async def test_an_error_of_the_work_is_raised():
    async def work():
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await cancel_once(work())


async def test_a_caller_cancelled_on_every_turn_passes_one_cancellation_on_and_waits_for_the_cleanup():
    work = Work()
    cleaned_when_the_caller_ended = []

    async def call():
        try:
            await cancel_once(work())
        finally:
            cleaned_when_the_caller_ended.append(work.cleaned)

    caller = asyncio.ensure_future(call())
    await asyncio.sleep(0)
    while not caller.done():  # what an anyio cancel scope does until the task ends
        caller.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert work.cancellations == 1 and cleaned_when_the_caller_ended == [True]


async def test_work_that_cancels_itself_raises_cancelled_error_at_once():
    async def work():
        asyncio.current_task().cancel()
        await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        await cancel_once(work())
