"""`magicore ui`: start the Streamlit chat app (headless, on loopback unless --host says
otherwise), or with --screenshot PATH, start it on a free port, ask one question in headless
Chromium, save a PNG of the page and stop."""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from magicore.tools.errors import SetupError

APP = Path(__file__).with_name("app") / "main.py"
DEMO_FACTORY = "magicore.ui.app.demo:demo_model"
DEFAULT_QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have now?"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from magicore.ui.cli import positive_float, positive_int

    parser.add_argument("--port", type=positive_int, default=None, help="port to serve on (default 8501)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; the app has no login, so think before 0.0.0.0)")
    parser.add_argument("--model", metavar="SPEC", help="the backend preselected in the sidebar (default: "
                                                        "$MAGICORE_MODEL, else embedded)")  # fmt: skip
    parser.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                        help="offer any LangChain chat model: a function with no arguments that returns it")
    parser.add_argument("--demo", action="store_true",
                        help="use a scripted demo model (no model server; it only adds two numbers)")
    parser.add_argument("--method", choices=["magicore", "sc", "bok", "self-refine"], help="preselected method")
    parser.add_argument("--reward", metavar="SPEC", help="preselected reward backends (see `magicore solve`)")
    parser.add_argument("--trace", metavar="EXPORTER", help="tracing on, to console, otlp or jsonl:PATH")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where conversations are kept (default: ~/.cache/magicore/ui; $MAGICORE_UI_DIR)")
    shot = parser.add_argument_group("screenshot")
    shot.add_argument("--screenshot", metavar="PATH", help="save a PNG of the app after one solved question, then exit")
    shot.add_argument("--question", default=DEFAULT_QUESTION, help="the question to ask for the screenshot")
    shot.add_argument("--wait", type=positive_float, default=600.0, metavar="S",
                      help="seconds to wait for the answer (default 600)")  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def app_env(args) -> dict[str, str]:
    """The environment the app reads its defaults from (app/sidebar.py, app/store.py)."""
    env = dict(os.environ)
    if args.model:
        env["MAGICORE_MODEL"] = args.model
    factory = DEMO_FACTORY if args.demo else args.model_factory
    if factory:
        env["MAGICORE_UI_MODEL_FACTORY"] = factory
    reward = args.reward or ("verifier" if args.demo else None)
    if reward:
        from magicore.tools.rewards.spec import check_reward_spec

        check_reward_spec(reward)
        env["MAGICORE_UI_REWARD"] = reward
    if args.method:
        env["MAGICORE_UI_METHOD"] = args.method
    if args.trace:
        env["MAGICORE_TRACE"] = args.trace
    if args.data_dir:
        env["MAGICORE_UI_DIR"] = str(Path(args.data_dir).expanduser().resolve())
    return env


def streamlit_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true", "--server.address", host, "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--server.runOnSave", "false", "--client.toolbarMode", "minimal", "--theme.base", "light",
    ]  # fmt: skip


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SetupError(f"the Streamlit server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SetupError(f"the Streamlit server did not answer at {url} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(args) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise SetupError("the UI needs streamlit: pip install 'magicore[ui]'")
    env = app_env(args)
    if args.screenshot:
        return take_screenshot(args, env)
    port = args.port or 8501
    if args.host not in LOOPBACK:
        print(f"magicore ui: warning: the app has no login; anyone who can reach {args.host}:{port} can use it",
              file=sys.stderr)  # fmt: skip
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"magicore ui: http://{host}:{port}  (Ctrl-C stops it)", file=sys.stderr, flush=True)
    # become the Streamlit server: signals (Ctrl-C, a supervisor's SIGTERM) reach it directly and
    # no orphan is left behind
    command = streamlit_command(args.host, port)
    os.execve(command[0], command, env)
    return 0  # not reached


def take_screenshot(args, env: dict[str, str]) -> int:
    from magicore.ui.app.screenshot import screenshot

    port = args.port or free_port()
    with tempfile.TemporaryDirectory(prefix="magicore-ui-") as scratch:
        env.setdefault("MAGICORE_UI_DIR", scratch)  # a fresh conversation unless --data-dir is given
        log_path = Path(scratch) / "streamlit.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(streamlit_command("127.0.0.1", port), env=env, stdout=log, stderr=log)
            try:
                url = f"http://127.0.0.1:{port}"
                wait_ready(url, process)
                path = screenshot(url, Path(args.screenshot), args.question, timeout=args.wait)
            except (SetupError, TimeoutError) as error:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise SetupError(f"{error}" + (f" (server log: {' | '.join(tail)})" if tail else "")) from error
            finally:
                stop(process)
    print(path)
    return 0
