"""tools/run_sync.py: synchronous calls of async code from scripts, worker threads, notebooks,
forked children and exit handlers. Each case runs in a child interpreter with an alarm, so a
hang fails the test instead of stalling the suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import asyncio, atexit, os, signal, sys, time
signal.alarm(20)
"""

CASES = {
    # a coroutine that raises SystemExit ends that call, not the calls after it
    "system_exit": ("""
from magicore.tools.run_sync import run_sync
async def leave(): sys.exit(3)
async def one(): return 1
try:
    run_sync(leave())
except SystemExit as e:
    print("raised", e.code)
print("next", run_sync(one()))
""", "raised 3\nnext 1\n"),
    # synchronous code in the loop's worker threads calling run_sync, eight at once: each gets a
    # loop of its own instead of waiting on the loop that waits for it
    "nested_from_worker_threads": ("""
from magicore.tools.run_sync import run_sync
def blocking(): time.sleep(0.1); return 1
async def inner(): return await asyncio.to_thread(blocking)
def sync_reward(): return run_sync(inner())
async def outer(): return sum(await asyncio.gather(*(asyncio.to_thread(sync_reward) for _ in range(8))))
print(run_sync(outer()))
""", "8\n"),
    # a forked child does not use the parent's loop
    "fork": ("""
from magicore.tools.run_sync import run_sync
async def one(): return 1
print("parent", run_sync(one()), flush=True)
pid = os.fork()
if pid == 0:
    print("child", run_sync(one()), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("status", status)
""", "parent 1\nchild 1\nstatus 0\n"),
    # an exit handler that runs after magicore's own still gets its call answered
    "after_exit_handler": ("""
def late(): print("late", run_sync(one()), flush=True)
atexit.register(late)
from magicore.tools.run_sync import run_sync
async def one(): return 1
print("first", run_sync(one()), flush=True)
""", "first 1\nlate 1\n"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_sync(case):
    code, expected = CASES[case]
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, expected), proc.stderr
