"""Fault injection: `magicore solve` against the mock server's failure modes (a real HTTP server on
loopback). Each fault ends in one line naming it, exit code 1, within the time `--timeout`
promises, and the line states the time really spent; a 429 waits as its Retry-After asks.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from magicore.agents.backends import chat_model
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.tools.errors import ModelError
from magicore.tools.llm import sample
from tests.test_cli import QUESTION, assert_one_line_error, magicore

#: What starting the CLI costs at most on a loaded 2-core machine, above the fault's own time.
STARTUP = 15.0


def solve(server, *args, timeout="20"):
    started = time.monotonic()
    proc = magicore("solve", QUESTION, "--method", "sc", "-k", "2", "--model", f"mock@{server.base_url}",
                    "--timeout", timeout, *args, timeout=120)  # fmt: skip
    return proc, time.monotonic() - started


@pytest.mark.parametrize(("mode", "fragment"), [
    ("error500", "answered HTTP 500: model crashed"),
    ("malformed", "sent a malformed response"),
    ("no_choices", "sent a reply without `choices`"),
    ("empty_choices", "sent a reply with no choices"),
    ("close", "closed the connection before its response was complete"),
])  # fmt: skip
def test_a_faulty_server_is_one_line_and_exit_code_1(mode, fragment):
    with MockServer(MockSettings(mode=mode)) as server:
        proc, _seconds = solve(server)
    assert_one_line_error(proc, fragment)
    assert proc.returncode == 1


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_a_hung_or_dripping_server_fails_once_after_the_timeout(mode):
    with MockServer(MockSettings(mode=mode)) as server:
        proc, seconds = solve(server, timeout="3")
    line = assert_one_line_error(proc, "did not answer within the 3 s timeout (--timeout)")
    assert proc.returncode == 1
    stated = float(re.search(r"([0-9.]+) s in all", line).group(1))
    assert 3.0 <= stated < 4.5, line  # the time really spent, every try included (a loaded machine lags)
    assert seconds < 3.0 + STARTUP  # not 2 node tries x 3 transport tries x 3 s
    assert len(server.settings.requests) == 1  # k=2 in one n=2 request, tried once


def test_a_429_waits_as_retry_after_asks():
    async def main():
        with MockServer(MockSettings(mode="rate_limited", retry_after=1.5, failures=1)) as server:
            model = chat_model(f"mock@{server.base_url}", timeout=10)
            started = time.monotonic()
            completions, used = await sample(model, [("user", QUESTION)])
            return time.monotonic() - started, completions, used, len(server.settings.requests)

    seconds, completions, used, requests = asyncio.run(main())
    assert requests == 2 and completions[0].text.endswith("\\boxed{42}.")
    assert 1.5 <= seconds < 5  # the SDK's own backoff would have waited 0.5 s


def test_a_retry_after_beyond_the_timeout_fails_at_once():
    async def main():
        with MockServer(MockSettings(mode="rate_limited", retry_after=30)) as server:
            model = chat_model(f"mock@{server.base_url}", timeout=5)
            started = time.monotonic()
            with pytest.raises(ModelError) as caught:
                await sample(model, [("user", QUESTION)])
            return time.monotonic() - started, str(caught.value), len(server.settings.requests)

    seconds, message, requests = asyncio.run(main())
    assert requests == 1 and seconds < 2
    assert "answered HTTP 429 and asked to retry after 30 s, more than the" in message
    assert "of the 5 s timeout (--timeout)" in message
