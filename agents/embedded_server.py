"""Entry point of the embedded model server: llama-cpp-python's server plus a parent watchdog.

Run as `python -m magicore.agents.embedded_server ARGS` with llama_cpp.server's own arguments.
A thread blocks on stdin, which the parent holds open as a pipe; when the parent dies, however
it dies (even SIGKILL), the pipe closes and this process exits, so the server never outlives it.
"""

from __future__ import annotations

import os
import sys
import threading


def _exit_when_parent_dies() -> None:
    try:
        while sys.stdin.buffer.read(1 << 16):
            pass
    finally:
        os._exit(0)


def main() -> None:
    threading.Thread(target=_exit_when_parent_dies, daemon=True).start()
    try:
        from llama_cpp.server.__main__ import main as serve

        serve()
    except BaseException as error:  # a model that cannot load, say: one line for the parent
        code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else 1
        if not isinstance(error, SystemExit):
            print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
        # os._exit: a normal exit would wait on the stdin thread and abort the interpreter
        os._exit(code)
    os._exit(0)


if __name__ == "__main__":
    main()
