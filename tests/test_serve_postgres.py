"""Durable conversations: two `magicore serve` replicas on one real Postgres (Debian's package,
started here in a temporary directory with initdb and pg_ctl, and stopped after) continue each
other's conversations."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
from openai import OpenAI

from magicore.evals.mock_server import MockServer, MockSettings
from magicore.evals.serve_process import ServeProcess, prompt_text

pytestmark = pytest.mark.timeout(240)


def _postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A Postgres server in a temporary directory; its URL. Postgres refuses to run as root, so
    as root it runs as Debian's `postgres` user."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("Debian's postgresql package is not installed (make test installs it)")
    as_user: list[str] = []
    data = tempfile.mkdtemp(prefix="magicore-pg-")
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    def run(*cmd):
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)

    run(f"{bindir}/initdb", "-D", f"{data}/db", "-U", "magicore", "--auth=trust", "--no-sync")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(f"{bindir}/pg_ctl", "-D", f"{data}/db", "-o", options, "-l", f"{data}/log", "-w", "-t", "60", "start")
    try:
        yield f"postgresql://magicore@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", f"{data}/db", "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)


def ask(replica: ServeProcess, text: str, **extra):
    client = OpenAI(base_url=replica.base_url, api_key="unused", max_retries=0)
    return client.chat.completions.create(model="magicore-sc", messages=[{"role": "user", "content": text}],
                                          extra_body={"k": 1, **extra})  # fmt: skip


def test_two_replicas_share_one_conversation_through_postgres(postgres, tmp_path):
    with MockServer(MockSettings()) as model:
        args = ("--model", f"mock-model@{model.base_url}", "--checkpoint", postgres)
        # both start at once: the checkpointer's tables are created by one of them, not both
        a = ServeProcess(*args, log=tmp_path / "a.log")
        b = ServeProcess(*args, log=tmp_path / "b.log")
        with a, b:
            assert "postgresql://magicore@127.0.0.1" in a.banner
            first = ask(a, "What is 40 + 2?")
            cid = first.model_extra["magicore"]["conversation_id"]
            model.settings.requests.clear()
            second = ask(b, "And doubled?", conversation_id=cid)
            prompt = prompt_text(model.settings.requests[0])
            assert "User: What is 40 + 2?" in prompt and "Assistant: 42" in prompt
            model.settings.requests.clear()
            ask(a, "And halved?", conversation_id=cid)  # back on the first replica: both turns
            prompt = prompt_text(model.settings.requests[0])
        assert second.model_extra["magicore"]["conversation_id"] == cid
        assert "User: What is 40 + 2?" in prompt and "User: And doubled?" in prompt
        assert "Traceback" not in a.stderr() + b.stderr()


def test_an_unreachable_postgres_is_one_line_at_start(tmp_path):
    port = _free_port()  # nothing listens there
    replica = ServeProcess("--model", "mock@http://127.0.0.1:9/v1", "--checkpoint",
                           f"postgresql://magicore:pw@127.0.0.1:{port}/db", log=tmp_path / "stderr.log")  # fmt: skip
    with pytest.raises(RuntimeError):
        replica.start(timeout=60)
    replica.stop()
    lines = [line for line in replica.stderr().splitlines() if line.strip()]
    assert replica.proc.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("magicore: error: cannot connect to the conversation store")
    assert ":***@" in lines[0] and "pw" not in lines[0]
