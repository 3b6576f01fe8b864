"""Session records: every session through the gateway leaves a row, activities and a recording
that plays back what the user saw (asciicast v2, readable by asciinema)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import OS_USER, run

LIST_TIMEOUT = 20


def cli(gw, *args, timeout=30):
    return run([str(gw.binary), *args, "--config", str(gw.config_path)], timeout=timeout)


def sessions(gw, *flags):
    r = cli(gw, "sessions", "list", "--json", *flags)
    assert r.rc == 0, str(r)
    return json.loads(r.out)


def wait_for(gw, predicate, what, timeout=LIST_TIMEOUT):
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        found = sessions(gw)
        match = [s for s in found if predicate(s)]
        if match:
            return match[0]
        time.sleep(0.2)
    raise AssertionError(f"no session {what} after {timeout} s; sessions: {json.dumps(found, indent=1)[-3000:]}")


def recorded_output(cast_bytes: bytes) -> bytes:
    """The "o" events put together, as the bytes they stand for (surrogateescape, as asciinema)."""
    # Split on LF only: str.splitlines() would also split inside events at U+2028, \x1c...
    lines = [l for l in cast_bytes.decode("utf-8").split("\n") if l]
    header = json.loads(lines[0])
    assert header["version"] == 2
    out = bytearray()
    for line in lines[1:]:
        t, code, data = json.loads(line)
        if code == "o":
            out += data.encode("utf-8", "surrogateescape")
    return bytes(out)


def export(gw, session_id, tmp_path) -> bytes:
    path = tmp_path / f"{session_id}.cast"
    r = cli(gw, "sessions", "export", session_id[:8], "-o", str(path))
    assert r.rc == 0, str(r)
    return path.read_bytes()


def test_interactive_session_is_recorded_and_replays_with_asciinema(gateway, tmp_path):
    before = {s["id"] for s in sessions(gateway)}
    term = gateway.spawn("alice@web01", dimensions=(30, 100))
    term.start_shell()
    term.run_line("echo recorded-$((6*7))", r"recorded-42", what="command output")
    term.type("exit")
    assert term.wait_exit() == 0

    s = wait_for(gateway, lambda s: s["id"] not in before and s["state"] != "online", "finished")
    assert s["state"] == "finished"
    assert (s["user"], s["asset"], s["account"], s["protocol"]) == ("alice", "web01", OS_USER, "ssh")
    assert s["remote_address"] == "127.0.0.1"
    assert "OpenSSH" in s["client_software"]
    assert s["ended"] and s["duration_seconds"] >= 0
    assert s["recording"].endswith(".cast.gz")

    shown = json.loads(cli(gateway, "sessions", "show", s["short_id"], "--json").out)
    kinds = [a["kind"] for a in shown["activities"]]
    assert kinds[:3] == ["connected", "authenticated", "upstream_connected"], kinds
    assert kinds[-1] == "disconnected", kinds

    cast = export(gateway, s["id"], tmp_path)
    header = json.loads(cast.split(b"\n")[0])
    assert (header["width"], header["height"]) == (100, 30)
    assert header["title"] == "alice@web01"
    assert b"recorded-42" in recorded_output(cast)

    # asciinema itself plays it (cat needs a terminal: run it under script(1)).
    r = run(["script", "-qec", f"asciinema cat {tmp_path / (s['id'] + '.cast')}", "/dev/null"], timeout=30)
    assert r.rc == 0, str(r)
    assert "recorded-42" in r.out

    r = run([str(gateway.binary), "play", s["short_id"], "--speed", "50", "--idle-limit", "0.1",
             "--config", str(gateway.config_path)], timeout=30)
    assert r.rc == 0, str(r)
    assert "recorded-42" in r.out


def test_recording_of_random_bytes_is_byte_exact(gateway, tmp_path):
    data = tmp_path / "random.bin"
    data.write_bytes(os.urandom(50 << 20))
    before = {s["id"] for s in sessions(gateway)}
    received = tmp_path / "received.bin"
    with open(received, "wb") as out:
        r = gateway.ssh("alice@web01", f"cat {data}", stdout=out, timeout=60)
    assert r.rc == 0, str(r)
    assert hashlib.sha256(received.read_bytes()).digest() == hashlib.sha256(data.read_bytes()).digest()

    s = wait_for(gateway, lambda s: s["id"] not in before and s["state"] != "online", "finished")
    recorded = recorded_output(export(gateway, s["id"], tmp_path))
    # The client got the asset's banner on stderr first, then the file on stdout.
    banner = r.err.encode()
    assert recorded.endswith(received.read_bytes()), "recorded output does not end with the bytes the client received"
    assert recorded[: len(recorded) - received.stat().st_size] == banner
    assert s["bytes_out"] >= received.stat().st_size


def test_refused_sessions_are_recorded_as_failed_with_the_reason(gateway):
    r = gateway.ssh("alice@nope@127.0.0.1".split("@127")[0], "true")
    assert r.rc != 0
    s = wait_for(gateway, lambda s: s["asset"] == "nope", "for asset nope")
    assert s["state"] == "failed"
    shown = json.loads(cli(gateway, "sessions", "show", s["id"], "--json").out)
    assert "unknown asset" in shown["reason"]
    assert shown["recording"] is None
    assert [a["kind"] for a in shown["activities"]][-1] == "upstream_failed"


def test_sessions_list_filters(gateway):
    gateway.ssh("alice@web01", "true")
    gateway.ssh("alice@down01", "true")
    wait_for(gateway, lambda s: s["asset"] == "down01", "for down01")
    assert {s["asset"] for s in sessions(gateway, "--asset", "down01")} == {"down01"}
    assert all(s["user"] == "alice" for s in sessions(gateway, "--user", "alice"))
    assert sessions(gateway, "--user", "nobody-at-all") == []
    assert all(s["state"] != "online" for s in sessions(gateway, "--finished"))
    assert cli(gateway, "sessions", "list", "--since", "not-a-date").rc != 0
    r = cli(gateway, "sessions", "list")
    assert r.rc == 0 and "USER" in r.out and "down01" in r.out


def test_kill_9_leaves_an_interrupted_session_that_plays_to_the_last_flush(make_gateway, tmp_path):
    gw = make_gateway(recording={"flush_interval_seconds": 0.2})
    busy = subprocess.Popen(gw.ssh_argv("alice@web01", "for i in $(seq 1 100000); do echo line-$i; sleep 0.005; done"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        seen = b""
        while b"line-200\n" not in seen and time.monotonic() < deadline:
            seen += os.read(busy.stdout.fileno(), 65536)
        assert b"line-200\n" in seen, "the busy session never got going"
        time.sleep(0.6)  # past a few flush intervals
        os.killpg(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(timeout=10)
    finally:
        busy.kill()
        busy.wait(timeout=10)

    [s] = sessions(gw, "--online")
    assert s["state"] == "online"  # as the killed gateway left it
    gw.start()
    s = wait_for(gw, lambda x: x["id"] == s["id"] and x["state"] != "online", "marked after restart")
    assert s["state"] == "interrupted"
    assert s["ended"] is not None
    out = recorded_output(export(gw, s["id"], tmp_path))
    lines = out.decode().split("\n")
    numbered = [l for l in lines if l.startswith("line-")]
    assert len(numbered) >= 200, f"only {len(numbered)} lines survived"
    assert numbered[:3] == ["line-1", "line-2", "line-3"]
    # Consecutive, nothing lost in between; only the tail after the last flush may be missing.
    assert numbered[-2] == f"line-{len(numbered) - 1}"


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs to hold recordings; skipped where mounting is not allowed."""
    mounts = []

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True, timeout=10)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")
        mounts.append(path)
        return path

    yield make
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)], capture_output=True, timeout=10)


@pytest.mark.parametrize("policy", ["terminate", "continue"])
def test_full_disk_follows_the_recording_policy_and_keeps_what_was_written(make_gateway, full_disk, tmp_path, policy):
    cfg_dir = tmp_path / "gw0"
    full_disk(cfg_dir / "var" / "recordings")
    gw = make_gateway(recording={"on_failure": policy})
    data = tmp_path / "random.bin"
    data.write_bytes(os.urandom(4 << 20))
    r = gw.ssh("alice@web01", f"cat {data}", stdout=subprocess.PIPE, timeout=60)
    s = wait_for(gw, lambda x: x["state"] != "online" and x["asset"] == "web01", "ended")
    shown = json.loads(cli(gw, "sessions", "show", s["id"], "--json").out)
    kinds = [a["kind"] for a in shown["activities"]]
    if policy == "terminate":
        assert r.rc != 0
        assert "cannot be recorded" in r.err
        assert s["state"] == "terminated" and s["terminated_by"] == "gatehouse"
        assert "terminated" in kinds
    else:
        assert r.rc == 0, str(r)
        assert len(r.out_bytes) == 4 << 20
        assert s["state"] == "finished"
        assert "recording_gap" in kinds
    # What reached the disk before it filled is still there and readable.
    rec = cfg_dir / "var" / "recordings" / s["recording"]
    assert rec.exists(), s["recording"]
    assert rec.stat().st_size > 500_000
    assert rec.read_bytes().startswith(b'{"version": 2')
    # The gateway itself carries on (under "terminate" it keeps refusing what it cannot record).
    assert gw.alive()
