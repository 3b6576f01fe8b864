"""The gateway under pressure: shutdown with users connected, a client that reads slowly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from conftest import run
from test_records import sessions, wait_for


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_sigterm_tells_users_closes_sessions_and_records_them_as_terminated(make_gateway):
    gw = make_gateway()
    term = gw.spawn("alice@web01")
    term.start_shell()
    os.kill(gw.proc.pid, signal.SIGTERM)
    term.expect("shutting down", what="the shutdown notice")
    assert term.wait_exit() != 0
    assert gw.proc.wait(timeout=20) == 0, gw.log_text()
    gw.proc = None  # stopped on purpose
    # No new connections once draining started.
    r = gw.ssh("alice@web01", "true", timeout=20)
    assert r.rc == 255
    [s] = [x for x in sessions(gw) if x["asset"] == "web01"]
    assert s["state"] == "terminated", s
    assert s["terminated_by"] == "shutdown"
    assert s["recording"].endswith(".cast.gz")


def test_slow_client_does_not_make_the_gateway_buffer(make_gateway):
    gw = make_gateway()
    baseline = rss_kib(gw.proc.pid)
    # The asset floods; the client reads a trickle. Flow control must hold the asset back.
    p = subprocess.Popen(gw.ssh_argv("alice@web01", "cat /dev/zero"), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    try:
        got = 0
        deadline = time.monotonic() + 8
        peak = baseline
        while time.monotonic() < deadline:
            got += len(p.stdout.read(4096))
            time.sleep(0.01)
            peak = max(peak, rss_kib(gw.proc.pid))
        assert got > 0
    finally:
        p.kill()
        p.wait(timeout=10)
    # A few SSH windows' worth at most (libssh windows are ~1.3 MB per direction), not the flood.
    assert peak - baseline < 48 * 1024, f"gateway grew by {peak - baseline} KiB while the client read {got} bytes"
    gw.assert_serving()
