"""LoopLocal: one value per event loop, closed and forgotten when its loop finishes."""

import asyncio

from magicore.tools.loop_local import LoopLocal


class Resource:
    def __init__(self):
        self.closed = False

    async def close(self):
        self.closed = True


def local():
    return LoopLocal(Resource, close=lambda r: r.close(), usable=lambda r: not r.closed)


def test_one_value_per_loop_released_when_asyncio_run_ends():
    values = local()

    async def use():
        first = await values.get()
        assert await values.get() is first and len(values) == 1
        return first

    a, b = asyncio.run(use()), asyncio.run(use())
    assert a is not b and a.closed and b.closed and len(values) == 0


def test_an_unusable_value_is_replaced_and_a_dead_loops_value_closed_by_the_next():
    values = local()

    async def replace():
        first = await values.get()
        first.closed = True
        return await values.get()

    loop = asyncio.new_event_loop()
    try:
        left = loop.run_until_complete(replace())
    finally:
        loop.close()  # no shutdown_asyncgens: its keeper never runs
    assert not left.closed and len(values) == 1
    asyncio.run(values.get())
    assert left.closed and len(values) == 0


async def test_close_all_closes_and_forgets():
    values = local()
    value = await values.get()
    await values.close_all()
    assert value.closed and len(values) == 0
