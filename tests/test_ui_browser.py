"""The chat app in a real browser: `magicore ui` on loopback, backed by a real OpenAI-compatible
HTTP server (the mock server, serving the scripted demo replies), driven by headless Chromium.

Chromium and its driver come from Debian (`make test` installs them). Set
MAGICORE_SCREENSHOT_DIR to keep the screenshots this test takes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from magicore.evals.mock_server import MockServer, MockSettings
from magicore.ui.app.demo import DemoResponder
from magicore.ui.app.screenshot import ANSWER, ERROR, ask, full_page_png, make_driver, wait_for
from magicore.ui.ui_command import free_port, stop, wait_ready

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have now?"
WARNING = '[data-testid="stChatMessage"] [data-testid="stAlertContentWarning"]'


@pytest.fixture(scope="module")
def mock():
    responder = DemoResponder()
    with MockServer(MockSettings(reply=lambda body, _i: responder.reply(body["messages"]))) as server:
        yield server


@pytest.fixture(scope="module")
def ui(mock, tmp_path_factory):
    """`magicore ui` on a free loopback port, its conversations in a temporary directory."""
    port, data = free_port(), tmp_path_factory.mktemp("ui-data")
    log = open(data / "ui.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "magicore.ui.cli", "ui", "--port", str(port), "--data-dir", str(data),
           "--model", f"mock-model@{mock.base_url}", "--reward", "verifier"]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()
    assert list(data.glob("*.sqlite")), "the conversations were kept under --data-dir"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = make_driver(width=1400, height=1000, profile=str(tmp_path_factory.mktemp("chromium")))
    yield driver
    driver.quit()


def answers(browser) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, ANSWER)]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def keep(path: Path) -> None:
    target = os.environ.get("MAGICORE_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def test_ask_in_the_browser_and_get_the_answer(ui, browser, tmp_path):
    browser.get(ui)
    ask(browser, QUESTION)
    wait_for(browser, ANSWER, 60, also_fail=ERROR)
    assert answers(browser) == ["7"]
    page = browser.find_element(By.TAG_NAME, "body").text
    assert QUESTION in page and "MAgICoRe" in page and "hard: 1 refinement round(s), then easy" in page
    assert "Solved in" in page and "24 LLM calls" in page and "model openai-compatible:mock-model@" in page

    shot = full_page_png(browser, tmp_path / "ui-answer.png")
    keep(shot)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[20:24], "big") > 1000  # tall: the whole page

    # the address names the conversation: a reload shows it again, from SQLite
    assert "?c=" in browser.current_url
    browser.refresh()
    wait_for(browser, ANSWER, 30)
    assert answers(browser) == ["7"] and QUESTION in browser.find_element(By.TAG_NAME, "body").text


def test_a_long_run_can_be_stopped_and_the_app_goes_on(ui, browser, mock, tmp_path):
    # every model request now takes 8 s: the run is stopped long before (the mock server's exit
    # waits for requests still being served, so no longer)
    mock.settings.latency = 8.0
    try:
        ask(browser, "What is 12 + 30?")
        button = wait_for(browser, ".st-key-stop button", 30)
        wait_for(browser, '[data-testid="stChatMessage"] [data-testid="stExpander"]', 30)  # the status panel
        started = time.monotonic()
        button.click()
        note = wait_for(browser, WARNING, 6)
        assert "Stopped before an answer" in note.text and time.monotonic() - started < 6
    finally:
        mock.settings.latency = 0.0
    keep(full_page_png(browser, tmp_path / "ui-stopped.png"))

    ask(browser, "What is 12 + 30?")
    wait_until(lambda: len(answers(browser)) == 2, 60, "the second answer")
    assert answers(browser) == ["7", "42"]
    browser.refresh()  # the stopped turn was recorded whole: question and note, between the answers
    wait_until(lambda: len(answers(browser)) == 2, 30, "the history")
    page = browser.find_element(By.TAG_NAME, "body").text
    assert page.count("What is 12 + 30?") == 2 and "Stopped before an answer" in page


PANEL = '[data-testid="stChatMessage"] [data-testid="stExpander"]'


def live_panel(browser) -> dict:
    """The last status panel as the browser shows it: open or folded, its state icon, its text."""
    panels = browser.find_elements(By.CSS_SELECTOR, PANEL)
    if not panels:
        return {}
    panel = panels[-1]
    details = panel.find_element(By.TAG_NAME, "details")
    icons = [i.get_attribute("data-testid") for i in panel.find_elements(By.CSS_SELECTOR, "[data-testid^=stExpanderIcon]")]
    return {"open": details.get_attribute("open") is not None, "icons": icons, "text": panel.text,
            "summary": panel.find_element(By.TAG_NAME, "summary")}  # fmt: skip


def test_the_live_panel_is_open_and_running_until_the_answer(ui, browser, mock, tmp_path):
    # a server that ignores n and streams five words a second: the Solver's samples are written
    # one request each, slowly enough to watch
    mock.settings.honour_n, mock.settings.tokens_per_second = False, 5.0
    try:
        browser.get(ui)  # a new conversation
        ask(browser, "What is 5 + 6?")
        wait_for(browser, PANEL, 30)
        seen, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:  # open and running all along, while samples are written
            panel = live_panel(browser)
            seen.append((panel["open"], panel["icons"]))
            if "Writing sample" in panel["text"]:
                break
            time.sleep(0.1)
        assert all(state == (True, ["stExpanderIconSpinner"]) for state in seen), seen
        # the Solver's text shows as it is written (five words a second), before the sample is
        # drawn whole, in the panel that is still open and running
        def streamed():
            now = live_panel(browser)
            return now if "Step 1: We start with 5" in now["text"] else None

        panel = wait_until(streamed, 30, "the Solver's text as it is written")
        assert "Writing sample" in panel["text"] and (panel["open"], panel["icons"]) == (True, ["stExpanderIconSpinner"])
        keep(full_page_png(browser, tmp_path / "ui-running.png"))
        # once scored, nothing is being written any more
        text = wait_until(lambda: "scored by" in live_panel(browser)["text"] and live_panel(browser)["text"], 60,
                          "the scored samples")  # fmt: skip
        assert "Writing sample" not in text
        mock.settings.latency = 4.0  # the reviews and refinements now take a while: the run goes on
        # a click folds it and it stays folded while the run goes on (no update reopens it)...
        live_panel(browser)["summary"].click()
        time.sleep(1.0)
        panel = live_panel(browser)
        # (folded, Streamlit shows a chevron instead of the state icon: the label says it runs)
        assert not panel["open"] and panel["summary"].text.splitlines()[-1] == "Solving…"
        # ...and a second click opens it again, for good
        panel["summary"].click()
        time.sleep(1.0)
        assert live_panel(browser)["open"]
        wait_until(lambda: answers(browser), 120, "the answer")
    finally:
        mock.settings.honour_n, mock.settings.tokens_per_second, mock.settings.latency = True, None, 0.0
    assert answers(browser) == ["11"]
    panel = live_panel(browser)  # the answer is in: folded, complete
    assert not panel["open"] and panel["icons"] == ["stExpanderIconCheck"]
    assert "Solved in" in panel["text"]
