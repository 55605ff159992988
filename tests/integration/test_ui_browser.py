"""The incidents page in a real browser: headless Chromium driven through Selenium against ``driftpilot ui``.

The browser and its driver are Debian's (``./scripts/ensure-chromium.sh``). Screenshots go to
``$DRIFTPILOT_SCREENSHOT_DIR`` (default: the test's temporary folder) and are checked for the
page's essential elements by their colours.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from components.decide.core import DecisionState
from components.drift.page import _DRIFTED_COLOUR, _REFERENCE_COLOUR
from tests.decisions import INCIDENT, escalated_state
from tests.servers import run_ui

pytestmark = pytest.mark.integration

TOKEN = "browser-test-token-0123456789abcdef"
_PENDING_BACKGROUND = "#fffaeb"


def _chromedriver() -> str:
    found = os.environ.get("DRIFTPILOT_CHROMEDRIVER") or shutil.which("chromedriver")
    assert found and shutil.which("chromium"), "no chromium/chromedriver: run ./scripts/ensure-chromium.sh"
    return found


@pytest.fixture()
def state(tmp_path: Path, validated, task) -> DecisionState:
    return escalated_state(tmp_path / "audit", validated, task)


@pytest.fixture()
def ui(state: DecisionState, tmp_path: Path) -> Iterator[str]:
    with run_ui(state.folder, TOKEN, tmp_path) as url:
        yield url


@pytest.fixture()
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1700"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(_chromedriver()), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _navigate_by(browser: Any, element: Any) -> None:
    """Click ``element`` and wait until the page it leads to has replaced this one (a click returns at once)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(page))
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")


def _has_colour(path: Path, colour: str, *, at_least: int = 200) -> bool:
    """Whether the screenshot has at least ``at_least`` pixels of ``colour`` (#rrggbb)."""
    wanted = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    image = Image.open(path).convert("RGB")
    return sum(1 for pixel in image.get_flattened_data() if pixel == wanted) >= at_least


def test_a_person_reads_an_incident_and_approves_it_with_the_token(ui: str, browser, state, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    shots = Path(os.environ.get("DRIFTPILOT_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    (approval,) = state.approvals().pending()

    browser.get(ui)
    rows = browser.find_elements(By.CSS_SELECTOR, "table tr td a")
    assert [r.text for r in rows] == [INCIDENT]
    assert "sign in to answer" in browser.page_source and not browser.find_elements(By.NAME, "decision")
    browser.save_screenshot(str(shots / "incidents.png"))
    assert _has_colour(shots / "incidents.png", _PENDING_BACKGROUND)  # the pending approval's box

    _navigate_by(browser, rows[0])
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ol.story li strong")]
    assert titles[0].startswith("Investigated:") and titles[1].startswith("Proposed retrain")
    assert titles[2].startswith("Escalated:")
    frame = browser.find_element(By.CSS_SELECTOR, "iframe")
    browser.execute_script("arguments[0].scrollIntoView()", frame)
    browser.switch_to.frame(frame)
    assert "NumArticles +" in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_elements(By.CSS_SELECTOR, "figure svg rect")
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "incident.png"))
    assert _has_colour(shots / "incident.png", _DRIFTED_COLOUR) and _has_colour(
        shots / "incident.png", _REFERENCE_COLOUR
    )

    browser.find_element(By.NAME, "token").send_keys("not-the-token")
    _navigate_by(browser, browser.find_element(By.XPATH, "//button[text()='Sign in']"))
    assert "that is not the token" in browser.page_source
    browser.save_screenshot(str(shots / "refused.png"))
    assert len(state.approvals().pending()) == 1

    browser.get(ui)
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    _navigate_by(browser, browser.find_element(By.XPATH, "//button[text()='Sign in']"))
    browser.find_element(By.NAME, "actor").send_keys("Ada Lovelace")
    _navigate_by(browser, browser.find_element(By.XPATH, "//button[text()='Approve']"))
    assert browser.current_url.endswith(f"/incidents/{INCIDENT}")
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ol.story li strong")]
    assert titles[-1] == f"Approved by Ada Lovelace (web) ({approval['id']})"
    browser.save_screenshot(str(shots / "approved.png"))
    assert state.approvals().pending() == []
    last = list(state.ledger.entries())[-1]
    assert last.kind == "approved" and last.actor == "Ada Lovelace (web)" and state.ledger.verify().ok
    verify = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "audit", "verify", "--ledger", str(state.ledger.path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0 and "chain intact" in verify.stdout
