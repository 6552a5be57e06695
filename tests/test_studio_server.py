"""`langgraph dev` on the repository (the real LangGraph server, in-memory runtime): every graph
of langgraph.json draws and lists its schemas with the defaults (the embedded model, which must
not be started for that), and graphs run over the server's HTTP API with a run's settings
passed as `context`, against a real OpenAI-compatible mock server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from magicore.evals.mock_server import MockServer
from magicore.graphs.state import GraphOutput

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
LANGGRAPH = Path(sys.executable).with_name("langgraph")
GRAPHS = json.loads((ROOT / "langgraph.json").read_text())["graphs"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not LANGGRAPH.exists():
        pytest.fail(f"{LANGGRAPH} is missing: install magicore[dev] (langgraph-cli[inmem])")
    port = free_port()
    log = tmp_path_factory.mktemp("langgraph-dev") / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "MAGICORE_MODEL"}  # the defaults: embedded
    env.update(LANGSMITH_TRACING="false", LANGGRAPH_CLI_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if call("GET", f"{base}/ok", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"langgraph dev did not start within 180 s:\n{log.read_text()[-3000:]}")
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(ROOT / ".langgraph_api", ignore_errors=True)  # the in-memory runtime's files


def assistant_id(base: str, graph_id: str) -> str:
    status, found = call("POST", f"{base}/assistants/search", {"graph_id": graph_id})
    assert status == 200 and found, (status, found)
    return found[0]["assistant_id"]


@pytest.mark.parametrize("graph_id", list(GRAPHS))
def test_every_graph_draws_and_lists_its_schemas_with_the_defaults(server, graph_id):
    base, log = server
    aid = assistant_id(base, graph_id)
    status, schemas = call("GET", f"{base}/assistants/{aid}/schemas")
    assert status == 200, f"{schemas}\n{log.read_text()[-3000:]}"
    status, drawing = call("GET", f"{base}/assistants/{aid}/graph")
    assert status == 200 and {"nodes", "edges"} <= set(drawing), drawing
    settings = set(schemas["context_schema"]["properties"])
    assert {"method", "model", "reward", "k", "rounds"} <= settings
    if graph_id != "agent-app":
        assert set(schemas["input_schema"]["properties"]) == {"question", "family", "calibration"}
        assert set(schemas["output_schema"]["properties"]) == set(GraphOutput.__annotations__)
    # the embedded model was not started for any of this
    assert "llama_cpp.server" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_a_graph_runs_over_the_api_with_the_runs_settings(server):
    base, log = server
    with MockServer() as model_server:  # every completion: "... \boxed{42}"
        status, thread = call("POST", f"{base}/threads", {})
        assert status == 200
        run = {"assistant_id": "sc", "input": {"question": "What is 40 + 2?"},
               "context": {"model": f"mock@{model_server.base_url}", "k": 3, "temperature": 0.3}}  # fmt: skip
        status, out = call("POST", f"{base}/threads/{thread['thread_id']}/runs/wait", run, timeout=300)
        assert status == 200, f"{out}\n{log.read_text()[-3000:]}"
        assert out["answer"] == "42" and out["votes"] == {"42": 3.0}
        assert out["usage"]["solver"]["llm_calls"] == 3
        assert model_server.settings.requests[0]["n"] == 3 and model_server.settings.requests[0]["temperature"] == 0.3


def test_magicore_streams_its_progress_and_the_models_text_over_the_api(server):
    base, log = server
    with MockServer() as model_server:
        run = {"assistant_id": "magicore", "input": {"question": "What is 40 + 2?"},
               "context": {"model": f"mock@{model_server.base_url}", "k": 2, "reward": "verifier"},
               "stream_mode": ["custom", "messages-tuple", "values"]}  # fmt: skip
        request = urllib.request.Request(f"{base}/runs/stream", data=json.dumps(run).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=300) as response:
            body = response.read().decode()
    events = [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: ")]
    assert "error" not in events, f"{body[-2000:]}\n{log.read_text()[-3000:]}"
    custom = [d["type"] for e, d in zip(events, data, strict=True) if e == "custom"]
    assert custom[:2] == ["chain", "chain"] and "route" in custom and custom[-1] == "final"
    messages = [d for e, d in zip(events, data, strict=True) if e == "messages"]
    assert any(meta.get("langgraph_node") == "solve" and "\\boxed{42}" in chunk["content"] for chunk, meta in messages)
    final = [d for e, d in zip(events, data, strict=True) if e == "values"][-1]
    assert final["answer"] == "42" and final["route"][0]["hard"] is False
