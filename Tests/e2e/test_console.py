"""The web console in a real browser (headless Chromium driven by Selenium): sign in, watch a
live session, terminate it, find it in the history, read its details, replay from a command,
download the recording. Screenshots of each page go to TEST_OUTPUT (default test-output/)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import PASSWORDS, REPO_ROOT

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

OUTPUT = Path(os.environ.get("TEST_OUTPUT", REPO_ROOT / "test-output")) / "console"
WAIT = 20
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def browser(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium and chromium-driver are required (scripts/test installs them)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    driver.downloads = downloads
    OUTPUT.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver, name):
    driver.save_screenshot(str(OUTPUT / f"{name}.png"))


def wait(driver, condition, what, timeout=WAIT):
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except Exception:
        shot(driver, "failure-" + what.replace(" ", "-")[:40])
        logs = "\n".join(f"{e['level']}: {e['message']}" for e in driver.get_log("browser"))[-3000:]
        raise AssertionError(f"timed out waiting for {what}; page text:\n{driver.find_element(By.TAG_NAME, 'body').text[-1500:]}\n"
                             f"--- browser console ---\n{logs}")


def text_in(driver, selector, text):
    def check(d):
        try:
            return text in d.find_element(By.CSS_SELECTOR, selector).text
        except Exception:
            return False
    return check


def sign_in(driver, gw, user):
    driver.get(gw.web_url + "/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    shot(driver, "01-sign-in")
    driver.find_element(By.ID, "signin").click()
    wait(driver, EC.presence_of_element_located((By.ID, "who")), "the signed-in page")


def test_console_from_live_monitor_to_replay(gateway, browser):
    driver = browser
    alice = gateway.spawn("alice@web01", dimensions=(24, 100))
    alice.start_shell()
    alice.run_line(f"echo '{XSS}'", r"<img src=x")
    alice.run_line("echo console-$((6*7))-seen", r"console-42-seen")

    # Sign in: a wrong password is refused on the page, the right one lands on the records.
    driver.get(gateway.web_url + "/login")
    driver.find_element(By.ID, "username").send_keys("adam")
    driver.find_element(By.ID, "password").send_keys("wrong")
    driver.find_element(By.ID, "signin").click()
    wait(driver, text_in(driver, "#message", "wrong username or password"), "the refusal")
    sign_in(driver, gateway, "adam")

    # Online sessions: alice's session, updating by itself.
    row = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "#online-table tbody tr")), "alice's online session")
    assert "alice" in row.text and "web01" in row.text
    session_id = row.get_attribute("data-id")
    shot(driver, "02-online-sessions")

    # Monitor: the current screen at once, then what alice types next.
    row.find_element(By.CSS_SELECTOR, "button.monitor").click()
    wait(driver, text_in(driver, "#player", "console-42-seen"), "the current screen in the live monitor")
    alice.run_line("echo typed-now-$((2+3))", r"typed-now-5")
    wait(driver, text_in(driver, "#player", "typed-now-5"), "live output in the monitor")
    shot(driver, "03-live-monitor")

    # Terminate, with confirmation.
    driver.find_element(By.ID, "terminate").click()
    wait(driver, EC.alert_is_present(), "the confirmation").accept()
    assert alice.wait_exit(timeout=10) != 0
    assert "an administrator (adam) ended this session" in alice.transcript.getvalue()

    # Historical sessions: it is there, terminated; the serial opens the details.
    driver.get(gateway.web_url + "/#history")
    link = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, f"#history-grid tr[data-id='{session_id}'] a.serial")),
                "the session in the history")
    assert "terminated" in driver.find_element(By.CSS_SELECTOR, f"#history-grid tr[data-id='{session_id}']").text
    shot(driver, "04-historical-sessions")
    link.click()

    # Details: the five modules; the user's text shown as text, never as HTML.
    wait(driver, text_in(driver, "#commands-table", "console-$((6*7))-seen"), "the commands module")
    assert XSS in driver.find_element(By.ID, "commands-table").text
    assert driver.find_elements(By.CSS_SELECTOR, "#commands-table img, #player img") == []
    wait(driver, text_in(driver, "#activities-table", "terminated"), "the activities module")
    assert "adam" in driver.find_element(By.ID, "basic-dl").text
    assert "adam" in driver.find_element(By.ID, "collaborations-table").text  # the live monitor was recorded
    assert "None." in driver.find_element(By.ID, "transfers-table").text
    shot(driver, "05-session-details")

    # A click on a command replays from that moment.
    command = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#commands-table tr.command") if "console-$((6*7))" in r.text)
    offset = float(command.get_attribute("data-offset"))
    command.click()
    wait(driver, lambda d: abs(float(d.find_element(By.ID, "player").get_attribute("data-time") or -1) - offset) < 2.5,
         "the replay at the command's moment")
    wait(driver, text_in(driver, "#player", "console-42-seen"), "the command's output in the replay")
    shot(driver, "06-replay-at-command")
    # Skipping idle time keeps the place in the recording.
    driver.find_element(By.ID, "skip-idle").click()
    wait(driver, lambda d: abs(float(d.find_element(By.ID, "player").get_attribute("data-time") or -1) - offset) < 2.5,
         "the same moment with idle time skipped")
    wait(driver, text_in(driver, "#player", "console-42-seen"), "the replay with idle time skipped")

    # Download: the recording file, playable by asciinema.
    driver.find_element(By.CSS_SELECTOR, "#download button").click()
    target = driver.downloads / f"{session_id}.cast"
    wait(driver, lambda d: target.exists() and target.stat().st_size > 0, "the downloaded recording")
    time.sleep(0.5)
    lines = target.read_text().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert any("console-42-seen" in json.loads(l)[2] for l in lines[1:])

    # Audit › Commands: every command across sessions, each linking into its replay.
    driver.get(gateway.web_url + "/commands")
    driver.find_element(By.NAME, "q").send_keys("console-")
    driver.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait(driver, text_in(driver, "#results", "console-$((6*7))-seen"), "the command search")
    assert XSS not in driver.find_element(By.ID, "results").text  # filtered out by the search
    shot(driver, "07-commands")
    driver.find_element(By.CSS_SELECTOR, "#results a.replay-link").click()
    wait(driver, text_in(driver, "#player", "console-42-seen"), "the replay from the commands page")

    # No alert is open: nothing anyone typed ran as script.
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


def test_console_pages_send_security_headers_and_users_see_only_their_own(gateway, browser):
    import urllib.request
    with urllib.request.urlopen(gateway.web_url + "/login", timeout=10) as r:
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Frame-Options"] == "DENY"
    # A user signs in and sees no Monitor or Terminate, and not bob's sessions.
    assert gateway.ssh("bob@web01", "true", key=gateway.keys.bob).rc != 0  # bob has no grant: a failed session of bob
    sign_in(browser, gateway, "alice")
    browser.get(gateway.web_url + "/#history")
    wait(browser, EC.presence_of_element_located((By.ID, "page-info")), "the history")
    assert "bob" not in browser.find_element(By.ID, "history-table").text
    assert browser.find_elements(By.CSS_SELECTOR, "button.terminate, button.monitor") == []
