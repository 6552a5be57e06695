"""Resources tied to an event loop or a process are released when it ends.

* agents/transport.py: the shared aiohttp session of a loop is closed and forgotten when the
  loop finishes, so a long-lived process (the Streamlit UI, the benchmark runner) calling
  `asyncio.run` again and again keeps at most one session (and no finished loop) alive.
* agents/embedded.py: a server whose start is interrupted (Ctrl-C during the health check) or
  fails is stopped, not left running unregistered. A cheap stand-in process replaces the model
  server; no model is loaded.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import typing
import warnings
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from magicore.agents import embedded, transport
from magicore.agents.transport import OpenAICompatibleChat

# -- the aiohttp session per event loop ---------------------------------------------------------


class _Chat(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the session pools the connection

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({
            "id": "c1", "object": "chat.completion", "created": 0, "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def chat(chat_server):
    before = len(transport._sessions)
    yield OpenAICompatibleChat(model="m", base_url=chat_server, api_key="k", max_retries=0)
    assert len(transport._sessions) == before


def _run_in_loops(chat, runs: int, run=asyncio.run):
    """`runs` event loops, each making two requests; weak references to their sessions and loops."""
    sessions, loops = [], []

    async def requests():
        for _ in range(2):
            assert (await chat.ainvoke("hi")).content == "ok"
        session = await transport._shared_session()
        assert not session.closed
        sessions.append(weakref.ref(session))
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert len(transport._sessions) == 1  # this loop's, none left from the loops before

    for _ in range(runs):
        run(requests())
    assert len(sessions) == runs
    return sessions, loops


def test_each_asyncio_run_closes_and_forgets_its_session(chat):
    sessions, loops = _run_in_loops(chat, 5)
    assert len(transport._sessions) == 0
    closed = [ref() is None or ref().closed for ref in sessions]
    gc.collect()
    assert closed == [True] * 5
    assert [ref() for ref in sessions] == [None] * 5
    assert [ref() for ref in loops] == [None] * 5


def test_a_loop_closed_without_finalizing_is_forgotten_by_the_next(chat):
    def run_and_close(coro):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(coro)
        finally:
            loop.close()  # no shutdown_asyncgens: the keeper never runs

    sessions, loops = _run_in_loops(chat, 3, run=run_and_close)
    assert len(transport._sessions) == 1  # the last loop's, dropped when the next loop starts
    with warnings.catch_warnings():  # aiohttp: unclosed sessions (their loop closed under them)
        warnings.simplefilter("ignore", ResourceWarning)
        asyncio.run(_one_request(chat))
        gc.collect()
    assert len(transport._sessions) == 0
    assert [ref() for ref in sessions + loops] == [None] * 6


async def _one_request(chat):
    assert (await chat.ainvoke("hi")).content == "ok"


async def test_a_running_loop_reuses_one_session(chat):
    await _one_request(chat)
    first = await transport._shared_session()
    await _one_request(chat)
    assert await transport._shared_session() is first
    await first.close()  # a closed session is replaced, not reused
    await _one_request(chat)
    second = await transport._shared_session()
    assert second is not first and not second.closed
    await second.close()
    transport._sessions.forget(second)


# -- the embedded server -----------------------------------------------------------------------


class _StandIn(embedded.EmbeddedServer):
    """An EmbeddedServer whose process is a sleeping Python, not llama-cpp-python's server."""

    started: typing.ClassVar[list[subprocess.Popen]] = []

    def _command(self) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    def _spawn(self) -> None:
        super()._spawn()
        self.started.append(self.process)


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    real_find_spec = embedded.importlib.util.find_spec
    monkeypatch.setattr(embedded.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "llama_cpp" else real_find_spec(name, *a))  # fmt: skip
    monkeypatch.setattr(embedded, "EmbeddedServer", _StandIn)
    monkeypatch.setattr(embedded, "server_binary", lambda echo=None: None)  # no llama-server lookup or build
    _StandIn.started = []
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    yield gguf
    for process in _StandIn.started:  # whatever the test found, kill what it started
        if process.poll() is None:
            process.kill()
            process.wait()


def _gone(process: subprocess.Popen) -> bool:
    if process.poll() is None:
        return False
    try:
        os.killpg(process.pid, 0)  # the server's process group (start_new_session)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_start_stops_the_server(stand_in, monkeypatch, error):
    def health_check(self, timeout):
        assert self.process.poll() is None  # the server process is up
        raise error("interrupted while waiting for the server")

    monkeypatch.setattr(_StandIn, "_wait_healthy", health_check)
    with pytest.raises(error):
        embedded.embedded_server(stand_in)
    (process,) = _StandIn.started
    assert _gone(process)
    assert str(stand_in.resolve()) not in embedded._servers


def test_a_started_server_is_registered_for_the_exit_hook(stand_in, monkeypatch):
    monkeypatch.setattr(_StandIn, "_wait_healthy", lambda self, timeout: True)
    server = embedded.embedded_server(stand_in)
    assert embedded.embedded_server(stand_in) is server  # shared, not started twice
    (process,) = _StandIn.started
    key = str(stand_in.resolve())
    assert embedded._servers[key] is server and process.poll() is None
    embedded._servers.pop(key).stop()  # what stop_all does, without stopping other tests' servers
    assert _gone(process)
