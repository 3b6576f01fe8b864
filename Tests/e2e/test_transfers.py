"""File transfers: the real sftp and scp clients (SFTP mode and legacy -O) through the gateway to
the real sshd, every file recorded with its path, size, direction and SHA-256, and the grants'
upload/download actions enforced."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import OS_USER, run

WAIT = 20
NAMES = ["empty.bin", "one.bin", "ten-mib.bin", "with spaces.txt", "naïve ☃ ünïcode.txt"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tree(root: Path) -> dict:
    """Files of every interesting size and name, in a tree; returns {relative path: sha256}."""
    root.mkdir(parents=True)
    (root / "empty.bin").write_bytes(b"")
    (root / "one.bin").write_bytes(b"\x07")
    (root / "ten-mib.bin").write_bytes(os.urandom(10 * 1024 * 1024))
    (root / "with spaces.txt").write_text("spaces in the name\n")
    (root / "naïve ☃ ünïcode.txt").write_text("utf-8 name ✓\n")
    sub = root / "sub dir" / "deeper"
    sub.mkdir(parents=True)
    (sub / "leaf.txt").write_text("leaf\n" * 1000)
    return {str(p.relative_to(root)): sha(p) for p in root.rglob("*") if p.is_file()}


def client_options(gw, key=None):
    return ["-F", "/dev/null", "-o", f"UserKnownHostsFile={gw.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-i", str(key or gw.keys.alice), "-o", "ConnectTimeout=10"]


def sftp(gw, login, commands, tmp_path, key=None):
    batch = tmp_path / f"batch-{time.monotonic_ns()}"
    batch.write_text("\n".join(commands) + "\n")
    return run(["sftp", *client_options(gw, key), "-P", str(gw.port), "-b", str(batch), f"{login}@127.0.0.1"], timeout=60)


def scp(gw, *args, legacy=False, key=None):
    return run(["scp", *client_options(gw, key), "-P", str(gw.port), *(["-O"] if legacy else []), *args], timeout=60)


def sessions_show(gw, session_id):
    r = run([str(gw.binary), "sessions", "show", session_id, "--json", "--config", str(gw.config_path)])
    assert r.rc == 0, str(r)
    return json.loads(r.out)


def transfer_sessions(gw, protocol, since):
    r = run([str(gw.binary), "sessions", "list", "--json", "--config", str(gw.config_path)])
    assert r.rc == 0, str(r)
    return [s for s in json.loads(r.out) if s["protocol"] == protocol and s["started"] >= since and s["state"] != "online"]


def wait_transfers(gw, protocol, since, count, what, direction=None):
    """The transfers of the sessions of `protocol` since `since`, once `count` are recorded."""
    deadline = time.monotonic() + WAIT
    found = []
    while time.monotonic() < deadline:
        found = [t for s in transfer_sessions(gw, protocol, since) for t in sessions_show(gw, s["id"]).get("transfers", [])
                 if direction is None or t["direction"] == direction]
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what}: {len(found)} of {count} transfers recorded after {WAIT} s: {json.dumps(found, indent=1)[-2000:]}")


def iso_now():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))


@pytest.fixture
def remote_dir():
    """A directory on the asset (the asset sshd runs on this machine)."""
    d = Path(f"/tmp/gh-xfer-{os.getpid()}-{time.monotonic_ns()}")
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def check_records(transfers, direction, expected, remote_root: Path, exact=True):
    by_path = {t["path"]: t for t in transfers if t["direction"] == direction}
    for rel, digest in expected.items():
        path = str(remote_root / rel)
        if not exact:  # legacy scp upload of a directory: see GatewayChannel+Transfers
            path = next((p for p in by_path if p.endswith("/" + rel)), path)
        assert path in by_path, f"no {direction} record for {path}; have {sorted(by_path)}"
        t = by_path[path]
        assert t["outcome"] == "ok", t
        assert t["bytes"] == (remote_root / rel).stat().st_size, t
        assert t["sha256"] == digest, t


def test_sftp_upload_and_download_are_recorded_with_checksums(gateway, tmp_path, remote_dir):
    local = tmp_path / "up"
    expected = make_tree(local)
    since = iso_now()
    r = sftp(gateway, "alice@web01", [f'put -r "{local}" "{remote_dir}/tree"'], tmp_path)
    assert r.rc == 0, str(r)
    for rel, digest in expected.items():
        assert sha(remote_dir / "tree" / rel) == digest, rel
    uploads = wait_transfers(gateway, "sftp", since, len(expected), "sftp uploads", direction="upload")
    check_records(uploads, "upload", expected, remote_dir / "tree")

    back = tmp_path / "down"
    since = iso_now()
    r = sftp(gateway, "alice@web01", [f'get -r "{remote_dir}/tree" "{back}"'], tmp_path)
    assert r.rc == 0, str(r)
    for rel, digest in expected.items():
        assert sha(back / rel) == digest, rel
    downloads = wait_transfers(gateway, "sftp", since, len(expected), "sftp downloads", direction="download")
    check_records(downloads, "download", expected, remote_dir / "tree")

    # Other file operations are activities of the session.
    since = iso_now()
    r = sftp(gateway, "alice@web01", [f'mkdir "{remote_dir}/made"', f'rename "{remote_dir}/tree/one.bin" "{remote_dir}/moved.bin"',
                                      f'rm "{remote_dir}/moved.bin"', f'rmdir "{remote_dir}/made"'], tmp_path)
    assert r.rc == 0, str(r)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        sessions = transfer_sessions(gateway, "sftp", since)
        details = " | ".join(a["detail"] for s in sessions for a in sessions_show(gateway, s["id"])["activities"] if a["kind"] == "file_operation")
        if all(w in details for w in ("mkdir", "rename", "remove", "rmdir")):
            break
        time.sleep(0.3)
    assert "moved.bin" in details and "made" in details, details


@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp-mode", "scp-legacy"])
def test_scp_both_modes_upload_and_download_recursively(gateway, tmp_path, remote_dir, legacy):
    local = tmp_path / "src"
    expected = make_tree(local)
    protocol = "scp" if legacy else "sftp"
    since = iso_now()
    r = scp(gateway, "-r", str(local), f"alice@web01@127.0.0.1:{remote_dir}/copy", legacy=legacy)
    assert r.rc == 0, str(r)
    for rel, digest in expected.items():
        assert sha(remote_dir / "copy" / rel) == digest, rel
    uploads = wait_transfers(gateway, protocol, since, len(expected), "scp uploads", direction="upload")
    check_records(uploads, "upload", expected, remote_dir / "copy")

    # One file to a new name: recorded under the name it was written as.
    since = iso_now()
    r = scp(gateway, str(local / "one.bin"), f"alice@web01@127.0.0.1:{remote_dir}/renamed.bin", legacy=legacy)
    assert r.rc == 0 and (remote_dir / "renamed.bin").read_bytes() == b"\x07", str(r)
    deadline = time.monotonic() + WAIT
    while True:
        renamed = wait_transfers(gateway, protocol, since, 1, "the renamed upload", direction="upload")
        if f"{remote_dir}/renamed.bin" in [t["path"] for t in renamed] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert f"{remote_dir}/renamed.bin" in [t["path"] for t in renamed], renamed
    assert not any(t["path"].endswith("/renamed.bin/one.bin") for t in renamed), renamed

    since = iso_now()
    back = tmp_path / "back"
    r = scp(gateway, "-r", f"alice@web01@127.0.0.1:{remote_dir}/copy", str(back), legacy=legacy)
    assert r.rc == 0, str(r)
    for rel, digest in expected.items():
        assert sha(back / rel) == digest, rel
    downloads = wait_transfers(gateway, protocol, since, len(expected), "scp downloads", direction="download")
    check_records(downloads, "download", expected, remote_dir / "copy")


def test_grants_refuse_uploads_or_downloads_and_record_the_refusal(make_gateway, tmp_path, remote_dir):
    gw = make_gateway(grants=[{"users": ["alice"], "assets": ["web01"], "accounts": [OS_USER], "actions": ["connect", "download"]},
                              {"users": ["bob"], "assets": ["web01"], "accounts": [OS_USER], "actions": ["connect", "upload"]}])
    (remote_dir / "there.txt").write_text("on the asset\n")
    local = tmp_path / "local.txt"
    local.write_text("from the user\n")

    # alice may download, not upload: sftp says permission denied, nothing lands on the asset.
    since = iso_now()
    r = sftp(gw, "alice@web01", [f'put "{local}" "{remote_dir}/nope.txt"'], tmp_path)
    assert r.rc != 0 and "denied" in (r.out + r.err).lower(), str(r)
    assert not (remote_dir / "nope.txt").exists()
    refused = wait_transfers(gw, "sftp", since, 1, "the refused upload")
    assert refused[0]["outcome"] == "refused" and refused[0]["path"] == f"{remote_dir}/nope.txt"
    r = sftp(gw, "alice@web01", [f'get "{remote_dir}/there.txt" "{tmp_path}/got.txt"'], tmp_path)
    assert r.rc == 0 and (tmp_path / "got.txt").read_text() == "on the asset\n", str(r)
    r = scp(gw, str(local), f"alice@web01@127.0.0.1:{remote_dir}/nope2.txt", legacy=True)
    assert r.rc != 0 and "not allowed" in r.err, str(r)
    assert not (remote_dir / "nope2.txt").exists()

    # bob may upload, not download.
    r = sftp(gw, "bob@web01", [f'get "{remote_dir}/there.txt" "{tmp_path}/stolen.txt"'], tmp_path, key=gw.keys.bob)
    assert r.rc != 0 and "denied" in (r.out + r.err).lower(), str(r)
    assert not (tmp_path / "stolen.txt").exists()
    r = scp(gw, f"bob@web01@127.0.0.1:{remote_dir}/there.txt", str(tmp_path / "stolen2.txt"), legacy=True, key=gw.keys.bob)
    assert r.rc != 0 and "not allowed" in r.err, str(r)
    r = sftp(gw, "bob@web01", [f'put "{local}" "{remote_dir}/from-bob.txt"'], tmp_path, key=gw.keys.bob)
    assert r.rc == 0 and (remote_dir / "from-bob.txt").read_text() == "from the user\n", str(r)


def test_a_malformed_sftp_stream_closes_only_its_channel(gateway):
    asyncssh = pytest.importorskip("asyncssh")

    async def attack():
        async with asyncssh.connect("127.0.0.1", port=gateway.port, username="alice@web01", client_keys=[str(gateway.keys.alice)],
                                    known_hosts=None) as conn:
            chan, _ = await conn.create_session(asyncssh.SSHClientSession, subsystem="sftp", encoding=None)
            # INIT, then a packet claiming 2 GiB.
            chan.write(b"\x00\x00\x00\x05\x01\x00\x00\x00\x03" + b"\x7f\xff\xff\xf0\x03" + b"x" * 64)
            await asyncio.wait_for(chan.wait_closed(), 10)

    asyncio.run(asyncio.wait_for(attack(), 30))
    gateway.assert_serving()
    r = run([str(gateway.binary), "sessions", "list", "--json", "--config", str(gateway.config_path)])
    newest = next(s for s in json.loads(r.out) if s["protocol"] == "sftp")
    acts = sessions_show(gateway, newest["id"])["activities"]
    assert any(a["kind"] == "protocol_error" for a in acts), acts
