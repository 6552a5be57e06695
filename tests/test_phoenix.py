"""Real OTLP export: Arize Phoenix on loopback receives a run's spans; read them back.

Phoenix is installed by `make test` into its own environment (.venv-phoenix, or the
`phoenix` executable named by $MAGICORE_PHOENIX), away from magicore's dependencies.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from magicore.evals.mock_server import MockServer, MockSettings

ROOT = Path(__file__).resolve().parent.parent
PHOENIX = os.environ.get("MAGICORE_PHOENIX") or str(ROOT / ".venv-phoenix" / "bin" / "phoenix")

pytestmark = pytest.mark.skipif(
    not Path(PHOENIX).exists(), reason=f"Phoenix is not installed at {PHOENIX}: `make test` installs it"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(workdir), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(grpc_port),
           "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false", "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = open(workdir / "phoenix.log", "wb")
    proc = subprocess.Popen([PHOENIX, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Phoenix did not start: {(workdir / 'phoenix.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def read_spans(url: str, project: str, expected: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/projects/{project}/spans?limit=1000", timeout=5) as r:
                spans = json.loads(r.read())["data"]
        except OSError:
            spans = []
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def test_spans_arrive_in_phoenix_with_their_hierarchy(phoenix):
    project = "magicore-test"
    with MockServer(MockSettings(honour_n=True)) as model:
        proc = subprocess.run(
            [sys.executable, "-m", "magicore.ui.cli", "solve", "What is 40 + 2?", "--model", model.base_url,
             "-k", "3", "--reward", "verifier", "--trace", "otlp", "--trace-content", "--json"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix, "PHOENIX_PROJECT_NAME": project},
        )
    assert proc.returncode == 0, proc.stderr
    trace_id = json.loads(proc.stdout)["trace_id"]
    # workflow + solver + chat + the batched reward preparation + 3 chain scorings + 1 sandbox
    # run (the verifier checks every chain in one run)
    spans = [s for s in read_spans(phoenix, project, expected=8) if s["context"]["trace_id"] == trace_id]
    by_id = {s["context"]["span_id"]: s for s in spans}
    names = sorted(s["name"] for s in spans)
    assert names.count("execute_tool reward_model") == 4 and names.count("execute_tool run_python") == 1
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "invoke_workflow magicore" and root["attributes"]["magicore.answer"] == "42"
    # with content capture, the question and the answer fill Phoenix's Input and Output columns
    assert root["attributes"]["input.value"] == "What is 40 + 2?" and root["attributes"]["output.value"] == "42"
    (solver,) = [s for s in spans if s["name"] == "invoke_agent solver"]
    (chat,) = [s for s in spans if s["name"] == "chat mock-model"]
    assert solver["parent_id"] == root["context"]["span_id"]
    assert chat["parent_id"] == solver["context"]["span_id"]
    assert solver["span_kind"] == "AGENT" and chat["span_kind"] == "LLM"
    assert chat["attributes"]["gen_ai.request.choice.count"] == 3
    for s in spans:
        if s["name"] == "execute_tool run_python":
            assert by_id[s["parent_id"]]["name"] == "execute_tool reward_model"
            assert s["span_kind"] == "TOOL"
