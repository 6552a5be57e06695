"""`magicore serve` as a child process, for the server benchmark (evals/serve_overhead.py) and the
tests: started on a free port, stopped with SIGTERM; its stderr optionally kept in a file."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

QUESTION = "Tom has 40 apples and buys 2 more. How many apples does he have?"


class ServeProcess:
    """`magicore serve --port 0 ARGS...`; `base_url` is its /v1 address once started."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, log: Path | None = None):
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("MAGICORE_MODEL", "MAGICORE_SERVE"))}
        environ.update(env or {})
        self.stderr_path = log
        self._stderr = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "magicore.ui.cli", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=environ)  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.banner = ""
        self.base_url = ""

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def start(self, timeout: float = 90.0) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"magicore serve exited with {self.proc.returncode}: {self.stderr()}")
                continue
            match = re.search(r"(http://\S+/v1)", line)
            if match:
                self.banner, self.base_url = line.strip(), match.group(1)
                return self
        raise RuntimeError(f"magicore serve did not start: {self.stderr()}")

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def health(self) -> dict:
        with urllib.request.urlopen(self.root + "/health", timeout=10) as response:
            return json.loads(response.read())

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path and self.stderr_path.exists() else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def prompt_text(request_body: dict) -> str:
    """Every message of a request the mock model server received, as one string."""
    return "\n".join(str(m.get("content", "")) for m in request_body.get("messages", []))
