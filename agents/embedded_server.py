"""Entry point of the embedded model server, with a parent watchdog.

    python -m magicore.agents.embedded_server ARGS              llama-cpp-python's server, in process
    python -m magicore.agents.embedded_server --exec BIN ARGS   another server program (llama-server)

A thread blocks on stdin, which the parent holds open as a pipe; when the parent dies, however
it dies (even SIGKILL), the pipe closes and this process exits, so the server never outlives it.
A server program run with --exec is this process's child: it is killed when the pipe closes, on
SIGTERM, and by the kernel if this process itself is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the stdin watchdog still stops it
        pass


def _watch_stdin(on_close) -> None:
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(1 << 16):
                pass
        finally:
            on_close()

    threading.Thread(target=watch, daemon=True).start()


def _run_program(command: list[str]) -> int:
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def stop(*_args) -> None:
        if child.poll() is None:
            child.kill()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    _watch_stdin(stop)
    return child.wait()


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--exec"]:
        code = _run_program(args[1:])
        sys.exit(code if code >= 0 else 128 - code)
    _watch_stdin(lambda: os._exit(0))
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
