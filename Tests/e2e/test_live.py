"""Online sessions: the HTTP API, live watching (WebSocket, CLI and SSH), sharing and joining,
and termination. Real OpenSSH clients, a real WebSocket client, the real gateway binary."""
from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from conftest import OS_USER, PASSWORDS, run

WAIT = 20


# ------------------------------------------------------------------------------------------
# helpers


def api(gw, method, path, token=None, cookie=None, body=None, raw=None, headers=None):
    """(status, decoded JSON or text, response headers)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(gw.web_url + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if cookie:
        req.add_header("Cookie", cookie)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            status, text, h = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, text, h = e.code, e.read(), e.headers
    ctype = h.get("Content-Type", "")
    return status, (json.loads(text) if "json" in ctype else text), h


def token_for(gw, user, *extra):
    r = run([str(gw.binary), "token", "create", "--user", user, *extra, "--config", str(gw.config_path)])
    assert r.rc == 0, str(r)
    token = r.out.strip().splitlines()[-1]
    assert token.startswith("ght_") and len(token) > 40, r.out
    return token


def online_session(gw, token, user="alice", timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, page, _ = api(gw, "GET", f"/api/v1/sessions?state=online&user={user}", token=token)
        assert status == 200, page
        if page["sessions"]:
            return page["sessions"][0]
        time.sleep(0.1)
    raise AssertionError(f"no online session of {user} after {timeout} s")


def wait_until(predicate, what, timeout=WAIT, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LiveReader:
    """A WebSocket watcher collecting asciicast events in a thread."""

    def __init__(self, gw, session_id, token):
        self.ws = ws_connect(gw.web_url.replace("http://", "ws://") + f"/api/v1/sessions/{session_id}/live",
                             additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10,
                             max_size=None)
        self.header = None
        self.events = []
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for message in self.ws:
                for line in message.splitlines():
                    if not line:
                        continue
                    value = json.loads(line)
                    with self.lock:
                        if self.header is None:
                            self.header = value
                        else:
                            self.events.append(value)
        except Exception:
            pass
        finally:
            self.closed.set()

    def output(self):
        with self.lock:
            return "".join(e[2] for e in self.events if e[1] == "o")

    def wait_output(self, pattern, timeout=WAIT):
        return wait_until(lambda: re.search(pattern, self.output()), f"{pattern!r} on the live stream; got {self.output()[-500:]!r}",
                          timeout=timeout)

    def close(self):
        self.ws.close()
        self.thread.join(5)


# ------------------------------------------------------------------------------------------
# the API: who may do what


def test_login_cookie_tokens_and_roles(gateway):
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    try:
        # Wrong password, then a real login with the session cookie.
        status, answer, _ = api(gateway, "POST", "/api/v1/login", body={"username": "alice", "password": "nope"})
        assert status == 401 and "error" in answer
        status, answer, h = api(gateway, "POST", "/api/v1/login", body={"username": "bob", "password": PASSWORDS["bob"]})
        assert status == 200 and (answer["user"], answer["role"]) == ("bob", "user")
        bob_csrf = answer["csrf_token"]
        set_cookie = h["Set-Cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        bob_cookie = set_cookie.split(";")[0]

        auditor = token_for(gateway, "audrey")
        s = online_session(gateway, auditor)
        assert s["user"] == "alice" and s["state"] == "online" and s["protocol"] == "ssh"

        # bob (role user) sees none of alice's sessions, by list, by id or by filter.
        status, page, _ = api(gateway, "GET", "/api/v1/sessions", cookie=bob_cookie)
        assert status == 200 and all(x["user"] == "bob" for x in page["sessions"])
        for path in (f"/api/v1/sessions/{s['id']}", f"/api/v1/sessions/{s['id']}/activities",
                     f"/api/v1/sessions/{s['id']}/recording", f"/api/v1/sessions/{s['short_id']}/commands"):
            status, answer, _ = api(gateway, "GET", path, cookie=bob_cookie)
            assert status == 404, (path, answer)
        status, answer, _ = api(gateway, "GET", "/api/v1/sessions?user=alice", cookie=bob_cookie)
        assert status == 403 and "error" in answer
        status, answer, _ = api(gateway, "POST", f"/api/v1/sessions/{s['id']}/terminate", cookie=bob_cookie,
                                headers={"X-CSRF-Token": bob_csrf})
        assert status == 404
        # The auditor sees it but may not end it; nobody unauthenticated sees anything.
        status, answer, _ = api(gateway, "POST", f"/api/v1/sessions/{s['id']}/terminate", token=auditor)
        assert status == 403 and "admin" in answer["error"]
        status, answer, _ = api(gateway, "GET", "/api/v1/sessions")
        assert status == 401 and "error" in answer
        status, answer, _ = api(gateway, "GET", "/api/v1/sessions", token="ght_not-a-real-token")
        assert status == 401
        # alice's own view has it.
        alice_token = token_for(gateway, "alice")
        status, mine, _ = api(gateway, "GET", f"/api/v1/sessions/{s['short_id']}", token=alice_token)
        assert status == 200 and mine["id"] == s["id"]
        # A user may not watch, even their own session.
        with pytest.raises(Exception):
            LiveReader(gateway, s["id"], alice_token)
        # A cookie alone cannot change anything: the page's CSRF token must come with it,
        # and another site's page (Origin) is refused outright.
        status, answer, _ = api(gateway, "POST", "/api/v1/logout", cookie=bob_cookie)
        assert status == 403 and "CSRF" in answer["error"]
        status, answer, _ = api(gateway, "GET", "/api/v1/me", cookie=bob_cookie, headers={"Origin": "http://evil.example"})
        assert status == 403 and "cross-origin" in answer["error"]
        status, _, _ = api(gateway, "POST", "/api/v1/logout", cookie=bob_cookie, headers={"X-CSRF-Token": bob_csrf})
        assert status == 200
        status, _, _ = api(gateway, "GET", "/api/v1/me", cookie=bob_cookie)
        assert status == 401
    finally:
        alice.close()


def test_expired_token_is_refused(gateway):
    token = token_for(gateway, "audrey", "--expires", "1")
    assert api(gateway, "GET", "/api/v1/me", token=token)[0] == 200
    db = sqlite3.connect(gateway.dir / "var" / "gatehouse.sqlite")
    with db:
        db.execute("UPDATE credential SET expires_at = ? WHERE kind = 'token' AND user = 'audrey'", (time.time() - 1,))
    db.close()
    status, answer, _ = api(gateway, "GET", "/api/v1/me", token=token)
    assert status == 401 and "expired" in answer["error"]


def test_bad_requests_get_clear_json_errors(gateway):
    cases = [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"username": "alice", "password": "x", "remember": True}).encode(), 400, "unknown field(s): remember"),
        (json.dumps({"username": 5, "password": "x"}).encode(), 400, "username and password"),
        (b"{" + b" " * 200_000 + b"}", 413, "too large"),
    ]
    for raw, status, text in cases:
        got, answer, _ = api(gateway, "POST", "/api/v1/login", raw=raw, headers={"Content-Type": "application/json"})
        assert got == status and text in answer["error"], (raw[:40], got, answer)
    token = token_for(gateway, "audrey")
    for query, text in (("state=sideways", "state must be"), ("page=0", "page must be"), ("since=yesterday", "since must be"),
                        ("colour=red", "unknown query parameter")):
        got, answer, _ = api(gateway, "GET", f"/api/v1/sessions?{query}", token=token)
        assert got == 400 and text in answer["error"], (query, answer)
    got, answer, _ = api(gateway, "GET", "/api/v1/nothing-here", token=token)
    assert got == 404 and "no such endpoint" in answer["error"]


def test_sessions_filters_pages_and_recording_stream(gateway):
    token = token_for(gateway, "audrey")
    for i in range(3):
        r = gateway.ssh("alice@web01", f"echo page-{i}")
        assert r.rc == 0, str(r)
    # The gateway closes a session's records just after the client is gone.
    wait_until(lambda: sum(1 for x in api(gateway, "GET", "/api/v1/sessions?state=finished&user=alice&per_page=10", token=token)[1]["sessions"]
                           if x["program"].startswith("exec: echo page-")) >= 3, "the three sessions' records")
    status, page, _ = api(gateway, "GET", "/api/v1/sessions?state=finished&user=alice&asset=web01&protocol=ssh&per_page=2", token=token)
    assert status == 200 and len(page["sessions"]) == 2 and page["total"] >= 3 and page["per_page"] == 2
    status, page2, _ = api(gateway, "GET", "/api/v1/sessions?state=finished&user=alice&asset=web01&protocol=ssh&per_page=2&page=2", token=token)
    assert status == 200 and {s["id"] for s in page2["sessions"]}.isdisjoint({s["id"] for s in page["sessions"]})
    status, none, _ = api(gateway, "GET", "/api/v1/sessions?asset=web02&since=2100-01-01", token=token)
    assert status == 200 and none["sessions"] == [] and none["total"] == 0
    newest = page["sessions"][0]
    status, cast, h = api(gateway, "GET", f"/api/v1/sessions/{newest['id']}/recording", token=token)
    assert status == 200 and h["Content-Type"] == "application/x-asciicast"
    lines = cast.decode().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert "page-2" in "".join(json.loads(l)[2] for l in lines[1:] if json.loads(l)[1] == "o")
    status, commands, _ = api(gateway, "GET", f"/api/v1/sessions/{newest['id']}/commands", token=token)
    assert status == 200 and [c["command"] for c in commands["commands"]] == ["echo page-2"]
    status, acts, _ = api(gateway, "GET", f"/api/v1/sessions/{newest['id']}/activities", token=token)
    assert status == 200 and acts["activities"][0]["kind"] == "connected"
    status, transfers, _ = api(gateway, "GET", f"/api/v1/sessions/{newest['id']}/transfers", token=token)
    assert status == 200 and transfers == {"transfers": []}


# ------------------------------------------------------------------------------------------
# watching


def test_watcher_attached_mid_session_gets_the_screen_then_live_output(gateway):
    alice = gateway.spawn("alice@web01", dimensions=(30, 100))
    alice.start_shell()
    alice.run_line("echo before-$((20+1))-watch", r"before-21-watch")
    token = token_for(gateway, "audrey")
    s = online_session(gateway, token)
    live = LiveReader(gateway, s["id"], token)
    try:
        # First the current screen, at the owner's size, with what was typed before.
        wait_until(lambda: live.events, "the first live event")
        with live.lock:
            first = list(live.events[:2])
        assert first[0][1] == "r" and first[0][2] == "100x30", first
        assert first[1][1] == "o" and "before-21-watch" in first[1][2], first
        # Then what happens next.
        alice.run_line("echo after-$((40+2))-watch", r"after-42-watch")
        live.wait_output(r"after-42-watch")
        # The session shows who watches it; the record keeps it.
        status, shown, _ = api(gateway, "GET", f"/api/v1/sessions/{s['id']}", token=token)
        assert shown["watchers"] == ["audrey"]
        alice.type("exit")
        assert alice.wait_exit() == 0
        assert live.closed.wait(WAIT), "the live stream did not end with the session"
        with live.lock:
            assert live.events[-1][1] == "m" and "ended" in live.events[-1][2]
        collabs = wait_until(lambda: [c for c in api(gateway, "GET", f"/api/v1/sessions/{s['id']}/collaborations", token=token)[1]["collaborations"]
                                      if c["left"]], "the watch's end to be recorded")
        assert collabs[0]["user"] == "audrey" and collabs[0]["mode"] == "watch" and collabs[0]["remote_address"] == "127.0.0.1"
    finally:
        live.close()
        alice.close()


def test_many_watchers_all_see_a_busy_session(gateway):
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    token = token_for(gateway, "audrey")
    s = online_session(gateway, token)
    watchers = [LiveReader(gateway, s["id"], token) for _ in range(100)]
    try:
        wait_until(lambda: all(w.events for w in watchers), "every watcher's first screen")
        alice.type("for i in $(seq 1 2000); do echo busy-line-$i; done; echo all-$((7*6))-done")
        alice.expect(r"all-42-done", what="the end of the busy output")
        for w in watchers:
            w.wait_output(r"all-42-done")
        status, shown, _ = api(gateway, "GET", f"/api/v1/sessions/{s['id']}", token=token)
        assert len(shown["watchers"]) == 100
    finally:
        for w in watchers:
            w.close()
        alice.close()


def test_stalled_watcher_is_dropped_without_stalling_the_session(make_gateway):
    gw = make_gateway()
    token = token_for(gw, "audrey")
    alice = gw.spawn("alice@web01")
    alice.start_shell()
    try:
        s = online_session(gw, token)
        # A WebSocket client that completes the handshake and then never reads.
        sock = socket.create_connection(("127.0.0.1", int(gw.web_url.rsplit(":", 1)[1])), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall((f"GET /api/v1/sessions/{s['id']}/live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: Bearer {token}\r\n\r\n").encode())
        assert b" 101 " in sock.recv(200)
        wait_until(lambda: api(gw, "GET", f"/api/v1/sessions/{s['id']}", token=token)[1]["watchers"] == ["audrey"], "the watcher")
        # The session pours out output for well past the stall limit (10 s) and never waits.
        alice.child.searchwindowsize = 4096
        alice.type("for i in $(seq 1 14); do head -c 1500000 /dev/zero | tr '\\0' x; sleep 1; done; echo; echo flood-$((9*9))-over")
        alice.expect(r"flood-81-over", timeout=60, what="the end of the flood (the session must not stall)")
        # Once its writes have waited for the stall limit (10 s), it is let go.
        wait_until(lambda: api(gw, "GET", f"/api/v1/sessions/{s['id']}", token=token)[1]["watchers"] == [],
                   "the stalled watcher to be cut loose", timeout=25)
        assert "live watcher cut loose" in gw.log_text()
        sock.close()
    finally:
        alice.close()


def test_cli_watch_and_terminate_a_busy_session(gateway):
    admin = token_for(gateway, "adam")
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    alice.run_line("echo cli-$((3*3))-screen", r"cli-9-screen")
    s = online_session(gateway, admin)
    env = {"GATEHOUSE_TOKEN": admin, "GATEHOUSE_SERVER": gateway.web_url, "PATH": "/usr/bin:/bin"}
    watch = subprocess.Popen([str(gateway.binary), "sessions", "watch", s["short_id"]], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    try:
        # Busy: the session floods its terminal while it is terminated.
        alice.type("while :; do echo busy; done")
        alice.expect("busy", what="the busy loop")
        time.sleep(0.5)
        started = time.monotonic()
        r = subprocess.run([str(gateway.binary), "sessions", "terminate", s["id"]], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0, r.stderr
        assert alice.wait_exit(timeout=10) != 0
        elapsed = time.monotonic() - started
        assert elapsed < 3, f"the session took {elapsed:.1f} s to close"
        assert "an administrator (adam) ended this session" in alice.transcript.getvalue()
        out, err = watch.communicate(timeout=WAIT)
        assert watch.returncode == 0, err
        assert b"cli-9-screen" in out and b"busy" in out
        status, shown, _ = api(gateway, "GET", f"/api/v1/sessions/{s['id']}", token=admin)
        assert (shown["state"], shown["terminated_by"]) == ("terminated", "adam")
        acts = api(gateway, "GET", f"/api/v1/sessions/{s['id']}/activities", token=admin)[1]["activities"]
        assert any(a["kind"] == "terminated" and "adam" in a["detail"] for a in acts), acts
        # Terminating it again is a clear conflict, not a crash.
        status, answer, _ = api(gateway, "POST", f"/api/v1/sessions/{s['id']}/terminate", token=admin)
        assert status == 409 and "not online" in answer["error"]
    finally:
        if watch.poll() is None:
            watch.kill()
        alice.close()


def test_auditor_watches_over_ssh_and_users_may_not(gateway):
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    alice.run_line("echo ssh-$((5*5))-watch", r"ssh-25-watch")
    token = token_for(gateway, "audrey")
    s = online_session(gateway, token)
    audrey = gateway.spawn(f"audrey@watch:{s['short_id']}", auth="password", options=["-tt"])
    try:
        audrey.expect("assword:", what="password prompt")
        audrey.send(PASSWORDS["audrey"] + "\r")
        audrey.expect(f"Watching session {s['short_id']} of alice", what="the watch banner")
        audrey.expect("ssh-25-watch", what="the current screen")
        audrey.send("echo typed-by-watcher-$((1+1))\r")  # ignored: read-only
        alice.run_line("echo next-$((6*6))-line", r"next-36-line")
        audrey.expect("next-36-line", what="live output")
        time.sleep(0.5)
        assert "typed-by-watcher-2" not in alice.transcript.getvalue()
        audrey.send("\x1d")
        assert audrey.wait_exit() == 0
    finally:
        audrey.close()
        alice.close()
    r = gateway.ssh(f"alice@watch:{s['short_id']}", options=["-tt"])
    assert r.rc != 0 and "may not watch" in r.out + r.err


# ------------------------------------------------------------------------------------------
# sharing


def share(gw, token, session_id, **body):
    status, answer, _ = api(gw, "POST", f"/api/v1/sessions/{session_id}/shares", token=token, body=body)
    assert status == 201, answer
    return answer["code"]


def join(gw, code, user="bob"):
    t = gw.spawn(f"{user}@join:{code}", options=["-tt"], key=getattr(gw.keys, user))
    return t


def test_write_joiner_types_into_the_session_and_read_joiner_cannot(gateway):
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    alice_token = token_for(gateway, "alice")
    s = online_session(gateway, alice_token)
    # A user cannot share someone else's session; bob cannot invite himself.
    bob_token = token_for(gateway, "bob")
    status, _, _ = api(gateway, "POST", f"/api/v1/sessions/{s['id']}/shares", token=bob_token, body={"mode": "write"})
    assert status == 404
    status, answer, _ = api(gateway, "POST", f"/api/v1/sessions/{s['id']}/shares", token=alice_token, body={"mode": "admin"})
    assert status == 400 and "mode" in answer["error"]

    code = share(gateway, alice_token, s["id"], mode="write", expires_in=600, users=["bob"])
    bob = join(gateway, code)
    try:
        bob.expect("Joined session", what="join banner")
        alice.expect("bob joined this session", what="the owner's notice")
        bob.send("echo joined-$((4*4))-typed\r")
        alice.expect("joined-16-typed", what="the joiner's command output on the owner's terminal")
        bob.expect("joined-16-typed", what="the joiner's own view")
        bob.send("\x1d")
        assert bob.wait_exit() == 0
        alice.expect("bob left this session", what="the owner's leave notice")
    finally:
        bob.close()

    read_code = share(gateway, alice_token, s["id"], mode="read")
    reader = join(gateway, read_code)
    try:
        reader.expect(r"Joined \(read-only\)", what="read-only join banner")
        reader.send("echo read-$((5*5))-ignored\r")
        alice.run_line("echo owner-$((8*8))-line", r"owner-64-line")
        reader.expect("owner-64-line", what="owner output seen by the reader")
        assert "read-25-ignored" not in alice.transcript.getvalue()
        reader.send("\x1d")
        reader.wait_exit()
    finally:
        reader.close()
    alice.type("exit")
    alice.wait_exit()
    collabs = wait_until(lambda: [c for c in api(gateway, "GET", f"/api/v1/sessions/{s['id']}/collaborations", token=alice_token)[1]["collaborations"]
                                  if c["left"]], "collaboration records", timeout=WAIT)
    modes = sorted((c["user"], c["mode"]) for c in collabs)
    assert ("bob", "read") in modes and ("bob", "write") in modes, collabs
    # The commands the joiner ran are in the session's commands.
    cmds = [c["command"] for c in api(gateway, "GET", f"/api/v1/sessions/{s['id']}/commands", token=alice_token)[1]["commands"]]
    assert "echo joined-$((4*4))-typed" in cmds, cmds


def test_owner_creates_an_invite_from_inside_the_session(gateway):
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    alice.send("~+")
    alice.expect(r"invite code ([a-z0-9]{12}) \(read-only", what="the invite code")
    code = alice.child.match.group(1)
    bob = join(gateway, code)
    try:
        bob.expect("Joined", what="join with the escape's code")
    finally:
        bob.close()
        alice.close()


def test_wrong_foreign_or_expired_invite_codes_are_refused(gateway):
    r = gateway.ssh("bob@join:abcdefghjkmn", options=["-tt"], key=gateway.keys.bob)
    assert r.rc != 0 and "unknown invite code" in r.out + r.err
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    try:
        token = token_for(gateway, "alice")
        s = online_session(gateway, token)
        only_audrey = share(gateway, token, s["id"], mode="read", users=["audrey"])
        r = gateway.ssh(f"bob@join:{only_audrey}", options=["-tt"], key=gateway.keys.bob)
        assert r.rc != 0 and "for other users" in r.out + r.err
        code = share(gateway, token, s["id"], mode="write")
        db = sqlite3.connect(gateway.dir / "var" / "gatehouse.sqlite")
        with db:
            db.execute("UPDATE share SET expires_at = ?", (time.time() - 1,))
        db.close()
        r = gateway.ssh(f"bob@join:{code}", options=["-tt"], key=gateway.keys.bob)
        assert r.rc != 0 and "expired" in r.out + r.err
    finally:
        alice.close()


def test_metrics_count_sessions_and_failed_logins(gateway):
    assert gateway.ssh("alice@web01", "true").rc == 0
    api(gateway, "POST", "/api/v1/login", body={"username": "alice", "password": "wrong"})
    status, text, h = api(gateway, "GET", "/metrics")
    assert status == 200 and h["Content-Type"].startswith("text/plain")
    text = text.decode()
    assert re.search(r'^gatehouse_sessions_started_total\{protocol="ssh"\} [1-9]', text, re.M), text
    assert re.search(r'^gatehouse_failed_logins_total\{via="web"\} [1-9]', text, re.M), text
    assert re.search(r"^gatehouse_sessions_online \d", text, re.M)
    assert re.search(r'^gatehouse_bytes_relayed_total\{direction="to_user",protocol="ssh"\} [1-9]', text, re.M), text
    assert "gatehouse_recorder_lag_seconds" in text


def test_auditor_menu_lists_online_sessions_and_watches_one(gateway):
    alice = gateway.spawn("alice@web01")
    alice.start_shell()
    alice.run_line("echo menu-$((9*8))-watch", r"menu-72-watch")
    token = token_for(gateway, "audrey")
    s = online_session(gateway, token)
    audrey = gateway.spawn("audrey", auth="password", options=["-tt"], dimensions=(40, 160))
    try:
        audrey.expect("assword:", what="password prompt")
        audrey.send(PASSWORDS["audrey"] + "\r")
        audrey.expect("Online sessions", what="the online sessions table")
        audrey.expect(rf"(w\d+)\s+{s['short_id']}\s+alice\s+web01", what="alice's session in the menu")
        choice = audrey.child.match.group(1)
        audrey.send(choice + "\r")
        audrey.expect(f"Watching session {s['short_id']}", what="the watch banner")
        audrey.expect("menu-72-watch", what="the current screen")
        audrey.send("\x1d")
        audrey.expect("Left the session", what="leaving the watch")
        audrey.expect("gatehouse> ", what="the menu again")
        audrey.send("q\r")
        audrey.wait_exit()
    finally:
        audrey.close()
        alice.close()
    # A user's menu has no online sessions to watch.
    bob = gateway.spawn("bob", options=["-tt"], key=gateway.keys.bob)
    try:
        bob.expect("gatehouse> ", what="bob's menu")
        assert "Online sessions" not in bob.transcript.getvalue()
        bob.send("q\r")
        bob.wait_exit()
    finally:
        bob.close()


def test_recorded_input_names_its_author(make_gateway):
    gw = make_gateway(recording={"record_input": True})
    alice = gw.spawn("alice@web01")
    alice.start_shell()
    token = token_for(gw, "alice")
    s = online_session(gw, token)
    bob = join(gw, share(gw, token, s["id"], mode="write"))
    try:
        bob.expect("Joined session", what="join banner")
        bob.send("echo from-bob-$((2*2))\r")
        alice.expect("from-bob-4", what="bob's command on alice's terminal")
        alice.run_line("echo from-alice-$((3*3))", r"from-alice-9")
        bob.send("\x1d")
        bob.wait_exit()
    finally:
        bob.close()
    alice.type("exit")
    alice.wait_exit()
    wait_until(lambda: api(gw, "GET", f"/api/v1/sessions/{s['id']}", token=token)[1]["state"] == "finished", "the session's end")
    cast = api(gw, "GET", f"/api/v1/sessions/{s['id']}/recording", token=token)[1].decode().splitlines()[1:]
    events = [json.loads(l) for l in cast]
    # Input events, each attributed by the last "input from" marker before it.
    author, typed = "alice", {"alice": "", "bob": ""}
    for t, code, data in events:
        if code == "m" and data.startswith("input from "):
            author = data[len("input from "):]
        elif code == "i":
            typed[author] += data
    assert "echo from-bob-$((2*2))" in typed["bob"], typed
    assert "echo from-alice-$((3*3))" in typed["alice"], typed
    assert "from-alice" not in typed["bob"] and "from-bob" not in typed["alice"], typed


def check_segmented(index, segments):
    """The rules asciinema-player enforces on a segmented recording."""
    starts = [s["start"] for s in index["segments"]]
    assert starts[0] == 0 and all(a < b for a, b in zip(starts, starts[1:])) and starts[-1] < index["duration"] or len(starts) == 1
    for n, seg in enumerate(segments):
        times = [e[0] for e in seg["events"]]
        end = starts[n + 1] if n + 1 < len(starts) else index["duration"]
        assert times and all(a <= b for a, b in zip(times, times[1:])), n
        assert times[0] >= starts[n] and (times[-1] < end if n + 1 < len(starts) else times[-1] == end), (n, times[0], times[-1], end)
        if n > 0:
            assert times[0] == starts[n]
    markers = [m[0] for m in index.get("markers", [])]
    assert markers == sorted(markers) and all(m <= index["duration"] for m in markers)


def test_recording_segments_replay_long_output_and_skip_idle_time(gateway):
    token = token_for(gateway, "audrey")
    r = gateway.ssh("alice@web01", "head -c 9000000 /dev/zero | tr '\\0' x; sleep 4; echo idle-$((5+5))-over", options=["-tt"])
    assert r.rc == 0 and "idle-10-over" in r.out
    s = wait_until(lambda: next((x for x in api(gateway, "GET", "/api/v1/sessions?state=finished&user=alice&per_page=5", token=token)[1]["sessions"]
                                 if x["has_recording"] and "idle-$((5+5))-over" in x["program"]), None), "the recorded session")
    base = f"/api/v1/sessions/{s['id']}/recording/segments"
    status, index, _ = api(gateway, "GET", base, token=token)
    assert status == 200 and len(index["segments"]) >= 2, index  # keyframes at least every 4 MiB of output
    segments = [api(gateway, "GET", seg["url"], token=token)[1] for seg in index["segments"]]
    check_segmented(index, segments)
    # Together the segments carry exactly the session's output; later ones start from a screen.
    output = "".join(e[2] for seg in segments for e in seg["events"] if e[1] == "o")
    assert output.count("x") == 9_000_000 and "idle-10-over" in output
    assert "x" in segments[1]["snapshot"]["init"]
    # Skipping idle time: the 4 s pause becomes 2 s, everywhere the player looks.
    status, idle, _ = api(gateway, "GET", base + "?idle=2", token=token)
    assert status == 200 and idle["gatehouse_idle_cuts"], idle
    assert 1.5 < index["duration"] - idle["duration"] < 2.5, (index["duration"], idle["duration"])
    check_segmented(idle, [api(gateway, "GET", seg["url"], token=token)[1] for seg in idle["segments"]])
    assert api(gateway, "GET", base + "?idle=0", token=token)[0] == 400
    assert api(gateway, "GET", base + "/99", token=token)[0] == 404
