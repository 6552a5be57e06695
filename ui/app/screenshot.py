"""Drive the chat app in headless Chromium (selenium): ask one question, wait for the answer,
open the status panel and save a PNG of the whole page. Used by `magicore ui --screenshot`.

Needs selenium (`pip install 'magicore[dev]'`) and Debian's chromium and chromium-driver
(`apt-get install chromium chromium-driver`), or CHROME_BIN / CHROMEDRIVER pointing elsewhere.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from magicore.tools.errors import SetupError

CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)  # fmt: skip
ANSWER = '[data-testid="stChatMessage"] [class*="st-key-answer-"] [data-testid="stMetricValue"]'
ERROR = '[data-testid="stChatMessage"] [data-testid="stAlertContentError"]'


def make_driver(width: int = 1400, height: int = 1000, profile: str | None = None):
    """Headless Chromium with the flags that keep it offline and quiet."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        raise SetupError("screenshots need selenium: pip install 'magicore[dev]'") from error
    binary = os.environ.get("CHROME_BIN", "/usr/bin/chromium")
    driver_path = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    for path in (binary, driver_path):
        if not os.path.exists(path):
            raise SetupError(f"{path} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile or tempfile.mkdtemp(prefix='magicore-chromium-')}")
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(driver_path), options=options)


def wait_for(driver, css: str, timeout: float, *, also_fail: str | None = None):
    """The first element matching `css`; SetupError if `also_fail` matches first or time runs out."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if found:
            return found[0]
        if also_fail:
            failed = driver.find_elements(By.CSS_SELECTOR, also_fail)
            if failed:
                raise SetupError(f"the app answered with an error: {failed[0].text.strip()}")
        time.sleep(0.2)
    raise TimeoutError(f"nothing matched {css} within {timeout:.0f} s")


def ask(driver, question: str, timeout: float = 30.0) -> None:
    """Type `question` into the chat input and send it."""
    from selenium.webdriver.common.keys import Keys

    box = wait_for(driver, '[data-testid="stChatInputTextArea"]', timeout)
    box.click()
    box.send_keys(question)
    box.send_keys(Keys.ENTER)


def full_page_png(driver, path: Path) -> Path:
    """Resize the window to the page's height (Streamlit scrolls inside its main block) and save."""
    height = driver.execute_script(
        "const pick = (css) => Array.from(document.querySelectorAll(css)).map(e => e.scrollHeight);"
        "return Math.max(document.documentElement.scrollHeight, ...pick('main.stMain'),"
        "                ...pick('[data-testid=\"stSidebarContent\"]'));"
    )
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(int(height) + 120, 8000))
    time.sleep(0.8)  # let charts re-layout
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise SetupError(f"the browser could not write {path}")
    return path


def screenshot(url: str, path: Path, question: str, *, timeout: float = 600.0, open_panel: bool = True) -> Path:
    """Open the app at `url`, ask `question`, wait for the answer, save a PNG to `path`."""
    from selenium.webdriver.common.by import By

    driver = make_driver()
    try:
        driver.get(url)
        ask(driver, question)
        wait_for(driver, ANSWER, timeout, also_fail=ERROR)
        if open_panel:  # the status panel folds away once the answer is in: open it to show the work
            for summary in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"] details summary'):
                summary.click()
            time.sleep(1.0)
        return full_page_png(driver, Path(path))
    finally:
        driver.quit()
