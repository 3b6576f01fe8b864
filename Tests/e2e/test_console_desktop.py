"""The console's desktop (RDP) player in a real browser (headless Chromium driven by Selenium).

* with a real RDP session (xfreerdp -> Gatehouse -> freerdp-shadow-cli, as test_rdp.py): the
  Monitor view draws the asset's desktop live, shows the end when the session is terminated,
  and the session page replays the recording to the asset's screen;

and, with known pictures at known times, without the RDP side:

* replay: the test writes a desktop recording (`gdr.py`) with known colours at known times,
  puts it where the gateway keeps recordings and points a session row at it, then plays it on
  the session page and reads the canvas back (getImageData) while playing, after seeking and
  with idle time skipped;
* live: the live monitor's script runs on a test page served, with the console's own CSP, by
  a small server in the test that also speaks the live WebSocket protocol of desktop sessions
  (docs/desktop-recording.md), so the test decides what arrives and when.

Screenshots go to TEST_OUTPUT (default test-output/)/console-desktop."""
from __future__ import annotations

import http
import json
import os
import queue
import sqlite3
import struct
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

import gdr
from conftest import PASSWORDS, REPO_ROOT
from rdp import PROBES, close_to, missing_tools
# The real RDP peers and an RDP gateway, as test_rdp.py sets them up (module fixtures).
from test_rdp import rdp_gateway, rdp_user, shadow_asset, tls_asset  # noqa: E402,F401
from test_live import token_for, api as api_call  # noqa: E402

selenium = pytest.importorskip("selenium")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from test_console import browser, sign_in, text_in, wait  # noqa: E402,F401  (browser is a fixture)
import test_console  # noqa: E402

OUTPUT = Path(os.environ.get("TEST_OUTPUT", REPO_ROOT / "test-output")) / "console-desktop"
XSS = "<img src=x onerror=alert(1)>"
CONSOLE = REPO_ROOT / "Sources/GatehouseWeb/Console"

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
MAGENTA, ORANGE, BLACK = (255, 0, 255), (255, 128, 0), (0, 0, 0)
# Where the canvas is read: the top-left, bottom-right and bottom-left quarters of 320x200.
A, B, C = (40, 25), (240, 150), (40, 150)


def demo_recording() -> gdr.Writer:
    """16 s of a 320x200 desktop; `expected` says what it shows when."""
    w = gdr.Writer(320, 200, title="alice@win01")
    w.keyframe_fill(0, RED)
    w.tile_fill(1000, 0, 0, 160, 100, GREEN)        # top-left quarter
    w.pointer(2000, 100, 50)
    w.event(2500, {"kind": "clipboard", "direction": "upload", "text": XSS, "bytes": 1234})
    w.keyframe_fill(3000, BLUE)
    w.tile_fill(4000, 160, 100, 160, 100, YELLOW)   # bottom-right quarter
    # 10 s of nothing.
    w.tile_fill(14000, 0, 100, 160, 100, MAGENTA)   # bottom-left quarter
    w.event(14000, {"kind": "key"})
    w.resize(15000, 200, 100)                        # smaller, black
    w.tile_fill(15500, 0, 0, 50, 50, ORANGE)
    w.end(16000)
    return w


def expected(t: float) -> dict:
    """Canvas size and colours at A, B, C (or at the points of a 200x100 screen) at time t."""
    if t < 1:
        return {"size": (320, 200), A: RED, B: RED, C: RED}
    if t < 3:
        return {"size": (320, 200), A: GREEN, B: RED, C: RED}
    if t < 4:
        return {"size": (320, 200), A: BLUE, B: BLUE, C: BLUE}
    if t < 14:
        return {"size": (320, 200), A: BLUE, B: YELLOW, C: BLUE}
    if t < 15:
        return {"size": (320, 200), A: BLUE, B: YELLOW, C: MAGENTA}
    if t < 15.5:
        return {"size": (200, 100), (10, 10): BLACK, (150, 80): BLACK}
    return {"size": (200, 100), (10, 10): ORANGE, (150, 80): BLACK}


READ_CANVAS = """
const [points] = arguments;
const player = document.getElementById('player'), canvas = document.getElementById('desktop-canvas');
if (!canvas) return null;
const ctx = canvas.getContext('2d'), pointer = document.getElementById('desktop-pointer');
return {
  t: player.dataset.time === undefined ? -1 : parseFloat(player.dataset.time), state: player.dataset.state || '', size: [canvas.width, canvas.height],
  pixels: points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3))),
  pointer: pointer.hidden ? null : [pointer.style.left, pointer.style.top],
};
"""


def read_canvas(driver, points=(A, B, C, (10, 10), (150, 80)), required=True) -> dict | None:
    """The player's time, the canvas size and colours at `points`, read in one go (so they agree)."""
    value = driver.execute_script(READ_CANVAS, [list(p) for p in points])
    if value is None and not required:
        return None
    assert value is not None, "no canvas on the page"
    value["colours"] = {tuple(p): tuple(c) for p, c in zip(points, value.pop("pixels"))}
    return value


def assert_shows(sample: dict, what: str):
    want = expected(sample["t"])
    got = {"size": tuple(sample["size"])} | {p: sample["colours"][p] for p in want if p != "size"}
    assert got == want, f"{what}: at t={sample['t']} the canvas shows {got}, expected {want}"


def insert_desktop_session(gw, data: bytes, user="alice", asset="win01") -> str:
    """Makes the gateway know a finished RDP session whose recording is `data`.

    There is no API or command that creates sessions (only real connections do), so, as
    test_live.py does for credentials and shares, the row goes straight into the gateway's
    SQLite store (schema: Sources/GatehouseCore/Store/SQLiteSessionStore.swift, table
    `session`), and the file where the gateway keeps recordings: data_dir/recordings/DAY/ID.gdr,
    the `recording` column holding the path relative to data_dir/recordings."""
    session_id = str(uuid.uuid4())
    started = time.time() - 120
    day = datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d")
    relative = f"{day}/{session_id}.gdr"
    path = gw.dir / "var" / "recordings" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    db = sqlite3.connect(gw.dir / "var" / "gatehouse.sqlite")
    with db:
        db.execute("""INSERT INTO session (id, user, asset, account, protocol, remote_address, client_software, program,
                          started_at, ended_at, state, terminated_by, reason, recording, bytes_in, bytes_out)
                      VALUES (?, ?, ?, ?, 'rdp', '127.0.0.1', 'e2e gdr.py', 'desktop', ?, ?, 'finished', NULL,
                              'the user logged off', ?, 4096, 65536)""",
                   (session_id, user, asset, "Administrator", started, started + 16, relative))
        db.execute("INSERT INTO activity (session_id, time, kind, detail) VALUES (?, ?, 'connected', 'from 127.0.0.1 (e2e)')",
                   (session_id, started))
    db.close()
    return session_id


def fetch(driver, path: str) -> dict:
    """GET from the page (the browser's login cookie): {status, type, text}."""
    return driver.execute_async_script("""
        const [path, done] = arguments;
        fetch(path, {credentials: 'same-origin'}).then(async (r) => done({status: r.status, type: r.headers.get('Content-Type'), text: await r.text()}))
          .catch((e) => done({status: 0, type: '', text: String(e)}));
    """, path)


def click_timeline(driver, fraction: float):
    timeline = driver.find_element(By.ID, "timeline")
    width = timeline.size["width"]
    ActionChains(driver).move_to_element_with_offset(timeline, int((fraction - 0.5) * width), 0).click().perform()


def wait_sample(driver, predicate, what, timeout=test_console.WAIT, points=(A, B, C, (10, 10), (150, 80))):
    """Waits until a canvas reading (at `points`) satisfies `predicate`; returns that reading."""
    found = {}

    def check(d):
        sample = read_canvas(d, points, required=False)
        if sample is not None and predicate(sample):
            found["sample"] = sample
            return True
        return False
    wait(driver, check, what, timeout=timeout)
    return found["sample"]


def shot(driver, name):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(OUTPUT / f"{name}.png"))


# --------------------------------------------------------------------------------------------
# a real RDP session: monitor, end, replay


def shows_asset(sample) -> bool:
    return sample["size"] == [1024, 768] and all(close_to(sample["colours"][p], colour) for p, colour in PROBES.items())


@pytest.mark.skipif(bool(missing_tools()), reason=f"RDP test tools missing: {missing_tools()}")
def test_real_rdp_session_is_monitored_live_and_replayed(rdp_gateway, rdp_user, browser, tmp_path):
    driver, gw = browser, rdp_gateway
    user = rdp_user("console").connect(gw.rdp_port, "alice#desk01", PASSWORDS["alice"], "/sec:tls")
    wrong = user.wait_for_screen(tmp_path / "user-screen.png")
    assert not wrong, f"the user's screen does not show the asset's picture: {wrong}\n{user.log_text()[-3000:]}"

    # Online sessions: the RDP session, with Monitor.
    sign_in(driver, gw, "adam")
    row = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "#online-table tbody tr")), "the online RDP session")
    assert "rdp" in row.text and "desk01" in row.text
    session_id = row.get_attribute("data-id")
    row.find_element(By.CSS_SELECTOR, "button.monitor").click()

    # The live monitor draws the asset's desktop; the watcher shows in the session.
    wait(driver, lambda d: d.find_element(By.ID, "player").get_attribute("data-ready") == "true", "the live desktop")
    wait_sample(driver, shows_asset, "the asset's desktop in the live monitor", points=tuple(PROBES))
    info = json.loads(fetch(driver, f"/api/v1/sessions/{session_id}")["text"])
    assert info["desktop"] is True and info["watchers"] == ["adam"], info
    # The user's mouse shows where it is.
    user.click(500, 400)
    wait(driver, lambda d: d.find_element(By.ID, "desktop-pointer").is_displayed(), "the user's pointer in the monitor")
    shot(driver, "06-real-rdp-monitor")

    # Terminated: the monitor shows the end, the user is disconnected.
    admin = token_for(gw, "adam")
    status, answer, _ = api_call(gw, "POST", f"/api/v1/sessions/{session_id}/terminate", token=admin)
    assert status == 200, answer
    wait(driver, lambda d: d.find_element(By.ID, "live-badge").text == "ENDED", "the end in the live monitor")
    user.wait(20)

    # The session page replays the recording: its last frame is the asset's desktop.
    driver.get(f"{gw.web_url}/sessions/{session_id}")
    wait(driver, lambda d: d.find_element(By.ID, "player").get_attribute("data-ready") == "true", "the desktop replay")
    duration = float(driver.find_element(By.ID, "player").get_attribute("data-duration"))
    assert duration > 0
    click_timeline(driver, 0.999)
    at_end = wait_sample(driver, lambda s: s["t"] >= duration * 0.99, "the seek to the end", points=tuple(PROBES))
    assert shows_asset(at_end), f"the replay's last frame is not the asset's desktop: {at_end}"
    shot(driver, "07-real-rdp-replay")
    button = driver.find_element(By.CSS_SELECTOR, "#download button")
    button.click()
    target = driver.downloads / f"{session_id}.gdr"
    wait(driver, lambda d: target.exists() and target.stat().st_size > 0 and not list(driver.downloads.glob("*.crdownload")),
         "the downloaded recording")
    header, records = gdr.read(target.read_bytes())
    assert (header["kind"], header["width"], header["height"]) == ("gatehouse-desktop", 1024, 768)
    assert any(r.kind == gdr.KEYFRAME for r in records)


# --------------------------------------------------------------------------------------------
# replay from the gateway


def test_desktop_recording_replays_on_the_session_page(make_gateway, browser):
    driver = browser
    gw = make_gateway()
    recording = demo_recording().data()
    session_id = insert_desktop_session(gw, recording)

    sign_in(driver, gw, "audrey")
    # The session JSON says it is a desktop; its recording has no segmented form.
    info = fetch(driver, f"/api/v1/sessions/{session_id}")
    assert info["status"] == 200 and json.loads(info["text"])["desktop"] is True
    segments = fetch(driver, f"/api/v1/sessions/{session_id}/recording/segments")
    assert segments["status"] == 409 and "desktop recordings are not segmented" in json.loads(segments["text"])["error"]

    driver.get(f"{gw.web_url}/sessions/{session_id}")
    wait(driver, lambda d: d.find_element(By.ID, "player").get_attribute("data-ready") == "true", "the desktop player")
    first = read_canvas(driver)
    assert first["t"] == 0 and first["state"] == "paused"
    assert_shows(first, "the first frame")
    assert first["pointer"] is None
    assert driver.find_element(By.ID, "player-time").text == "0:00 / 0:16"
    # The clipboard event: a marker on the seek bar and a line in the events, as text.
    marks = driver.find_elements(By.CSS_SELECTOR, "#timeline .mark.event")
    assert len(marks) == 2 and XSS in marks[0].get_attribute("title")
    events = driver.find_element(By.ID, "desktop-events")
    assert f'clipboard upload: "{XSS}" (1234 bytes)' in events.text
    assert driver.find_elements(By.CSS_SELECTOR, "#player img, #timeline img") == []
    shot(driver, "01-desktop-replay-start")

    # Play: every reading while it plays shows the screen of its own time.
    driver.find_element(By.ID, "play").click()
    samples = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        sample = read_canvas(driver)
        assert_shows(sample, "while playing")
        samples.append(sample)
        if sample["t"] >= 3.5:
            break
        time.sleep(0.1)
    times = [s["t"] for s in samples]
    assert times[-1] >= 3.5, f"the player did not get to 3.5 s in 15 s: {times}"
    assert times == sorted(times) and any(0 < t < 1 for t in times) and any(1 <= t < 3 for t in times), times
    assert any(s["pointer"] for s in samples if s["t"] >= 2), "the pointer did not show after 2 s"
    driver.find_element(By.ID, "play").click()  # pause
    shot(driver, "02-desktop-replay-playing")

    # Seeking: an event in the list jumps to its moment, with the pointer where it was.
    driver.find_element(By.CSS_SELECTOR, "#desktop-events li").click()
    at_event = wait_sample(driver, lambda s: s["t"] == 2.5, "the seek to the clipboard event")
    assert_shows(at_event, "at the clipboard event")
    assert at_event["pointer"] == ["31.25%", "25%"], at_event["pointer"]
    # Forward across keyframes on the seek bar, then back before the first tile.
    click_timeline(driver, 0.6)
    later = wait_sample(driver, lambda s: abs(s["t"] - 9.6) < 0.3, "the seek to about 9.6 s")
    assert_shows(later, "after seeking forward")
    assert later["pointer"] is not None, "the pointer from before the keyframe is kept"
    click_timeline(driver, 0.03)
    earlier = wait_sample(driver, lambda s: abs(s["t"] - 0.48) < 0.3, "the seek back to about 0.5 s")
    assert_shows(earlier, "after seeking back")
    assert earlier["pointer"] is None
    shot(driver, "03-desktop-replay-sought")

    # Skipping idle time: the 10 s without records pass in 2 s.
    click_timeline(driver, 4.5 / 16)
    wait_sample(driver, lambda s: abs(s["t"] - 4.5) < 0.3, "the seek to about 4.5 s")
    driver.find_element(By.ID, "skip-idle").click()
    started = time.monotonic()
    driver.find_element(By.ID, "play").click()
    after_idle = wait_sample(driver, lambda s: s["t"] >= 14, "the end of the idle time", timeout=12)
    assert time.monotonic() - started < 7, "idle time was not skipped"
    assert_shows(after_idle, "after the idle time")
    # To the end: the screen was made smaller, then drawn on.
    end = wait_sample(driver, lambda s: s["state"] == "ended", "the end of the recording")
    assert end["t"] == 16
    assert_shows(end, "at the end")
    shot(driver, "04-desktop-replay-end")

    # Speed: at 16x the rest of the recording, idle time and all, plays in about a second.
    driver.find_element(By.ID, "skip-idle").click()  # off again
    click_timeline(driver, 0.03)
    wait_sample(driver, lambda s: abs(s["t"] - 0.48) < 0.3 and s["state"] == "paused", "the seek back to the start")
    Select(driver.find_element(By.ID, "speed")).select_by_value("16")
    started = time.monotonic()
    driver.find_element(By.ID, "play").click()
    wait_sample(driver, lambda s: s["state"] == "ended", "the end at 16x", timeout=10)
    assert time.monotonic() - started < 6, "16x was not faster"

    # Download: the very file.
    button = driver.find_element(By.CSS_SELECTOR, "#download button")
    assert ".gdr" in button.text
    button.click()
    target = driver.downloads / f"{session_id}.gdr"
    wait(driver, lambda d: target.exists() and target.stat().st_size == len(recording), "the downloaded recording")
    assert target.read_bytes() == recording
    header, records = gdr.read(target.read_bytes())
    assert header["kind"] == "gatehouse-desktop" and records[-1].kind == gdr.END

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


def test_a_broken_desktop_recording_says_so(make_gateway, browser):
    gw = make_gateway()
    session_id = insert_desktop_session(gw, b'{"version":2,"kind":"something-else"}\n')
    sign_in(browser, gw, "adam")
    browser.get(f"{gw.web_url}/sessions/{session_id}")
    wait(browser, text_in(browser, "#player", "Cannot play this recording"), "the player's refusal")


# --------------------------------------------------------------------------------------------
# the live monitor against a scripted live stream


LIVE_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>desktop live test</title>
<link rel="stylesheet" href="/static/console.css"></head>
<body><main>
<div class="player-controls" id="controls"></div>
<div class="player-box"><div id="player"></div></div>
</main>
<script src="/static/app.js"></script>
<script src="/static/desktop-player.js"></script>
<script src="/static/desktop-live-test.js"></script>
</body></html>
"""
LIVE_SCRIPT = b""""use strict";
GatehouseDesktop.live({ container: document.getElementById("player"), controls: document.getElementById("controls"), sessionId: "e2e-live" });
"""
# The gateway's own policy (Sources/GatehouseWeb/Console.swift): the player must work under it.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class ScriptedLiveServer:
    """Serves the console's files and a test page over HTTP, and on
    /api/v1/sessions/e2e-live/live a WebSocket that sends what the test puts in `outbox`
    (str: a text message, bytes: a binary message, None: close with 1000)."""

    def __init__(self):
        from websockets.datastructures import Headers
        from websockets.http11 import Response
        from websockets.sync.server import serve

        self.outbox: queue.Queue = queue.Queue()
        self.connected = threading.Event()

        def respond(status, body, content_type):
            headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                               ("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                               ("Cache-Control", "no-cache"), ("Connection", "close")])
            return Response(status.value, status.phrase, headers, body)

        def process_request(connection, request):
            path = request.path.split("?")[0]
            if path == "/api/v1/sessions/e2e-live/live":
                return None
            if path == "/favicon.ico":
                return respond(http.HTTPStatus.NO_CONTENT, b"", "text/plain")
            if path == "/":
                return respond(http.HTTPStatus.OK, LIVE_PAGE, "text/html; charset=utf-8")
            if path == "/static/desktop-live-test.js":
                return respond(http.HTTPStatus.OK, LIVE_SCRIPT, "text/javascript; charset=utf-8")
            name = path.removeprefix("/static/")
            if path.startswith("/static/") and "/" not in name and (CONSOLE / name).is_file():
                kind = "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"
                return respond(http.HTTPStatus.OK, (CONSOLE / name).read_bytes(), kind)
            return respond(http.HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def handler(ws):
            self.connected.set()
            while True:
                item = self.outbox.get()
                if item is None:
                    ws.close(1000, "the session ended")
                    return
                ws.send(item)

        self.server = serve(handler, "127.0.0.1", 0, process_request=process_request, compression=None)
        self.url = f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.outbox.put(None)
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_server():
    server = ScriptedLiveServer()
    yield server
    server.stop()


def test_desktop_live_monitor_draws_records_as_they_come(live_server, browser):
    driver = browser
    driver.get(live_server.url + "/")
    assert live_server.connected.wait(10), "the page did not open the live WebSocket"
    send = live_server.outbox.put

    # The header, then the backlog: a keyframe, in one message with a pointer.
    send(gdr.header_line(64, 48, title="alice@win01").decode())
    send(gdr.image_record(gdr.KEYFRAME, 0, 0, 0, 64, 48, gdr.solid(64, 48, RED)) + gdr.record(gdr.POINTER, 10, struct.pack("<HH", 16, 12)))
    points = ((5, 5), (40, 30))
    first = wait_sample(driver, lambda s: s["t"] >= 0.01 and s["size"] == [64, 48], "the live keyframe")
    assert read_canvas(driver, points)["colours"] == {(5, 5): RED, (40, 30): RED}
    assert first["pointer"] == ["25%", "25%"]
    assert "watching read-only" in driver.find_element(By.ID, "controls").text
    assert driver.find_element(By.ID, "live-badge").text == "LIVE"

    # A tile arriving split over two messages, then an event, the user's text shown as text.
    tile = gdr.image_record(gdr.TILE, 500, 32, 24, 32, 24, gdr.solid(32, 24, GREEN))
    send(tile[:7])
    send(tile[7:] + gdr.record(gdr.EVENT, 600, json.dumps({"kind": "clipboard", "direction": "download", "text": XSS, "bytes": 28}).encode()))
    wait_sample(driver, lambda s: s["t"] >= 0.6, "the tile and the event")
    assert read_canvas(driver, points)["colours"] == {(5, 5): RED, (40, 30): GREEN}
    wait(driver, text_in(driver, "#desktop-events", f'clipboard download: "{XSS}" (28 bytes)'), "the live event")
    assert driver.find_elements(By.CSS_SELECTOR, "#player img") == []
    shot(driver, "05-desktop-live")

    # The screen gets smaller (black), is drawn on, and the session ends.
    send(gdr.record(gdr.RESIZE, 900, struct.pack("<HH", 32, 16)) + gdr.image_record(gdr.TILE, 950, 0, 0, 8, 8, gdr.solid(8, 8, BLUE)))
    resized = wait_sample(driver, lambda s: s["t"] >= 0.95, "the resize")
    assert resized["size"] == [32, 16]
    assert read_canvas(driver, ((2, 2), (20, 10)))["colours"] == {(2, 2): BLUE, (20, 10): BLACK}
    send(gdr.record(gdr.END, 1000))
    send(None)
    wait(driver, lambda d: d.find_element(By.ID, "live-badge").text == "ENDED", "the end of the live session")
    assert "the session ended" in driver.find_element(By.ID, "controls").text
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


def test_console_issues_a_one_time_rdp_password_that_logs_in(rdp_gateway, rdp_user, browser, tmp_path):
    """The console's "RDP password" button: what an mstsc user does before connecting."""
    driver, gw = browser, rdp_gateway
    sign_in(driver, gw, "alice")
    driver.find_element(By.ID, "rdp-password").click()
    code = wait(driver, EC.presence_of_element_located((By.ID, "rdp-password-value")), "the one-time RDP password")
    password = code.text
    assert len(password) == 20, password
    assert "alice#ASSET" in driver.find_element(By.ID, "rdp-password-box").text
    shot(driver, "rdp-password")
    user = rdp_user("console-nla").connect(gw.rdp_port, "alice#desk01", password, "/sec:nla")
    wrong = user.wait_for_screen(tmp_path / "screen.png")
    assert not wrong, f"no desktop with the console's one-time password: {wrong}\n{user.log_text()[-3000:]}"
