"""Running a command's coroutine so that Ctrl-C stops it cleanly, however often it is pressed.

`asyncio.run` cancels the run on the first Ctrl-C and raises KeyboardInterrupt wherever the
loop happens to be on the second, which can leave a clean-up waiting forever on a future that
will never be set (the checkpoint database's, say) or print a traceback from an exit handler.
Here the first Ctrl-C cancels the run, later ones are ignored, and the clean-up gets `grace`
seconds; past them the process leaves at once, which is safe because everything magicore
writes survives a kill (docs/reliability.md). Hand-written: asyncio offers no bounded clean-up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any

#: Seconds the clean-up after Ctrl-C may take before the process leaves without it.
GRACE_SECONDS = 10.0
EXIT_INTERRUPTED = 130


def run(coro: Coroutine[Any, Any, Any], *, grace: float = GRACE_SECONDS) -> Any:
    """`asyncio.run(coro)`, with Ctrl-C handled once; raises KeyboardInterrupt when interrupted."""
    if (threading.current_thread() is not threading.main_thread() or not hasattr(asyncio, "Runner")
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        # signal handlers belong to the main thread; Runner is Python 3.11+; a process started
        # with SIGINT ignored (in the background) or handled by its host keeps it that way
        return asyncio.run(coro)
    # a plain flag, not a threading.Event: a second Ctrl-C can run this handler again while the
    # first is inside Event.set, whose lock it then waits for forever
    pressed = [False]
    main: asyncio.Task | None = None

    async def outer():
        nonlocal main
        main = asyncio.current_task()
        return await coro

    with asyncio.Runner() as runner:
        loop = runner.get_loop()

        def on_sigint(_signum, _frame) -> None:
            if pressed[0]:
                return  # the clean-up is under way; a second Ctrl-C must not break it
            pressed[0] = True
            if main is not None:
                loop.call_soon_threadsafe(main.cancel)
            timer = threading.Timer(grace, _leave)
            timer.daemon = True
            timer.start()

        previous = signal.signal(signal.SIGINT, on_sigint)  # asyncio.Runner then leaves SIGINT to us
        try:
            result = runner.run(outer())
            if pressed[0]:  # the run caught its cancellation and ended early
                raise KeyboardInterrupt
            return result
        except asyncio.CancelledError:
            if pressed[0]:
                raise KeyboardInterrupt from None
            raise
        finally:
            if pressed[0]:  # leave the handler in place until the runner's clean-up is done
                runner.close()
            signal.signal(signal.SIGINT, previous if not pressed[0] else signal.SIG_IGN)


def _leave() -> None:
    """The clean-up took too long: say so in the usual words and leave."""
    try:
        sys.stderr.write("magicore: interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)
