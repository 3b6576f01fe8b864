"""End-to-end behaviour of the Gatehouse SSH gateway, driven with the real OpenSSH client.

Login names: `alice@web01` (user@asset) and `alice@ACCOUNT@web01` (user@account@asset); plain
`alice` gets the asset menu. The shared gateway's config is conftest.default_config: alice is
granted web01, down01 (closed port), refused01 (stored key the asset does not accept), pinned01
(correct host key pin) and badpin01 (wrong pin); web02 exists but alice has no grant; bob has
no grants at all.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shlex
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BANNER_TEXT, OS_USER, PASSWORDS, free_port,
                      gateway_lines, run, sha256_file)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


# --------------------------------------------------------------------------------------------
# exec


def test_exec_prints_command_output(gateway):
    r = gateway.ssh("alice@web01", "echo hi")
    assert r.rc == 0, r
    assert r.out == "hi\n", r


def test_exec_passes_nonzero_exit_status(gateway):
    r = gateway.ssh("alice@web01", "exit 3")
    assert r.rc == 3, r


def test_exec_killed_by_signal_exits_like_a_direct_connection(gateway, direct):
    d = direct("kill -TERM $$")
    g = gateway.ssh("alice@web01", "kill -TERM $$")
    assert g.rc == d.rc, f"direct gave {d.rc}, through the gateway {g.rc}\n{g}"


def test_exec_keeps_stderr_apart_from_stdout(gateway):
    r = gateway.ssh("alice@web01", "echo out; echo err >&2")
    assert r.rc == 0, r
    assert r.out == "out\n", r
    assert "err" in r.err, r


def test_exec_with_dash_l_login(gateway):
    r = run(gateway.ssh_argv("alice@web01", "echo via-l"))  # ssh -l alice@web01 127.0.0.1 ...
    assert r.rc == 0 and r.out == "via-l\n", r


def test_exec_with_user_at_asset_at_host_destination(gateway):
    r = gateway.ssh("alice@web01", "echo via-dest", dest_form=True)  # ssh alice@web01@127.0.0.1
    assert r.rc == 0 and r.out == "via-dest\n", r


def test_exec_with_explicit_account_uses_that_account(gateway):
    r = gateway.ssh(f"alice@{OS_USER}@web01", "id -un")
    assert r.rc == 0 and r.out == f"{OS_USER}\n", r


def test_exec_with_hash_separator(gateway):
    r = gateway.ssh("alice#web01", "echo via-hash")
    assert r.rc == 0 and r.out == "via-hash\n", r


def test_exec_forwards_environment_the_asset_accepts(gateway):
    r = gateway.ssh("alice@web01", "echo $GH_TEST_X", options=["-o", "SetEnv=GH_TEST_X=42"])
    assert r.rc == 0 and r.out == "42\n", r


def test_exec_shows_asset_banner_on_stderr_only(gateway):
    r = gateway.ssh("alice@web01", "echo body")
    assert r.rc == 0, r
    assert BANNER_TEXT in r.err, f"the asset's banner did not reach the user:\n{r}"
    assert r.out == "body\n", r


# --------------------------------------------------------------------------------------------
# data through pipes


def test_pipe_100mib_through_cat_is_byte_exact(gateway, big_file, tmp_path):
    out = tmp_path / "out.bin"
    with open(big_file, "rb") as fin, open(out, "wb") as fout:
        r = gateway.ssh("alice@web01", "cat", stdin=fin, stdout=fout)
    assert r.rc == 0, r
    assert out.stat().st_size == big_file.stat().st_size, f"got {out.stat().st_size} bytes\n{r}"
    assert sha256_file(out) == sha256_file(big_file)


def test_piped_input_reaches_remote_intact(gateway, big_file):
    with open(big_file, "rb") as fin:
        r = gateway.ssh("alice@web01", "sha256sum", stdin=fin)
    assert r.rc == 0, r
    assert r.out.split()[0] == sha256_file(big_file), r


def test_remote_sees_stdin_eof(gateway):
    r = gateway.ssh("alice@web01", "wc -c; echo after-eof", input=b"12345")
    assert r.rc == 0, r
    assert r.out.split() == ["5", "after-eof"], r


def _make_tree(root: Path):
    rnd = os.urandom
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "empty.txt").write_bytes(b"")
    (root / "name with spaces.txt").write_text("spaces\n")
    (root / "big.bin").write_bytes(rnd(5 << 20))
    for i in range(40):
        (root / "sub" / f"f{i}.bin").write_bytes(rnd(i * 997))
        (root / "sub" / "deeper" / f"g{i}.txt").write_text(f"line {i}\n" * i)
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    os.symlink("sub/f3.bin", root / "link-to-f3")


def _tree(root: Path) -> dict:
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", st.st_mode & 0o700)
            else:
                entries[rel] = ("file", st.st_mode & 0o700, sha256_file(p))
    return entries


def test_tar_pipe_copies_tree_exactly(gateway, tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    _make_tree(src)
    ssh = shlex.join(map(str, gateway.ssh_argv("alice@web01", f"tar x -C {shlex.quote(str(dest))}")))
    r = run(["bash", "-c", f"set -o pipefail; tar c -C {shlex.quote(str(src))} . | {ssh}"])
    assert r.rc == 0, r
    assert _tree(dest) == _tree(src)


# --------------------------------------------------------------------------------------------
# interactive shell (PTY)


def test_pty_shell_runs_commands_and_follows_window_size(gateway, asset_pty):
    t = gateway.spawn("alice@web01", options=["-tt"], dimensions=(24, 80))
    try:
        t.start_shell()
        t.run_line("echo $((6*7))", r"[\r\n]42\r?\n")
        t.run_line("stty size", r"[\r\n]24 80\r?\n", what="initial size 24 80")
        t.child.setwinsize(40, 132)
        # the window-change request races with the typed command; retry briefly
        for attempt in range(20):
            t.type("stty size")
            i = t.expect([r"[\r\n]40 132\r?\n", r"[\r\n]\d+ \d+\r?\n"], what="stty size output")
            t.expect_prompt()
            if i == 0:
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"window size never became 40 132:\n{t.text()[-2000:]!r}")
        t.type("exit")
        assert t.wait_exit() == 0
    finally:
        t.close()


# --------------------------------------------------------------------------------------------
# the asset menu (plain `alice`)

MENU_PROMPT = "gatehouse> "


def _menu_login(g) -> "Terminal":
    t = g.spawn("alice", auth="password", dimensions=(24, 100))
    t.expect(r"(?i)password:", what="the password prompt")
    t.type(PASSWORDS["alice"])
    t.expect(re.escape(MENU_PROMPT), what="the menu prompt")
    return t


def test_menu_lists_granted_assets_connects_and_returns(gateway, asset_sshd, asset_pty):
    t = _menu_login(gateway)
    try:
        menu = plain(t.child.before)
        assert "web01" in menu and "down01" in menu, menu
        assert "web02" not in menu, f"menu shows an asset alice has no grant on:\n{menu}"
        m = re.search(rf"^\s*(\d+)\s+web01\s+{re.escape(OS_USER)}\s+127\.0\.0\.1:{asset_sshd.port}\s*$", menu, re.M)
        assert m, f"no table line for web01 like '  1  web01  {OS_USER}  127.0.0.1:{asset_sshd.port}':\n{menu}"

        # by number
        t.type(m.group(1))
        t.start_shell()
        t.run_line("echo menu-ok", r"[\r\n]menu-ok\r?\n")
        t.type("exit")
        t.expect(re.escape(MENU_PROMPT), what="the menu again after leaving the asset")

        # by name
        t.type("web01")
        t.start_shell()
        t.run_line("echo by-name", r"[\r\n]by-name\r?\n")
        t.type("exit")
        t.expect(re.escape(MENU_PROMPT), what="the menu again after leaving the asset")

        t.type("q")
        assert t.wait_exit() == 0
        assert "web02" not in plain(t.text())
    finally:
        t.close()


def test_menu_text_matching_several_assets_filters_the_list(make_gateway, asset_sshd, keys):
    web03 = {"name": "web03", "host": "127.0.0.1", "ssh_port": asset_sshd.port,
             "accounts": [{"name": OS_USER, "private_key_file": str(keys.account)}]}
    g = make_gateway(extra_assets=[web03], extra_grants=[{"users": ["alice"], "assets": ["web03"]}])
    t = _menu_login(g)
    try:
        first = plain(t.child.before)
        assert "web03" in first and "down01" in first, first
        t.type("web")
        t.expect(re.escape(MENU_PROMPT), what="the menu prompt after filtering")
        filtered = plain(t.child.before)
        assert "web01" in filtered and "web03" in filtered, filtered
        assert "down01" not in filtered, f"filter 'web' still lists down01:\n{filtered}"
        t.type("q")
        assert t.wait_exit() == 0
    finally:
        t.close()


# --------------------------------------------------------------------------------------------
# user authentication


def test_password_login_works(gateway):
    r = gateway.ssh("alice@web01", "echo pw-ok", auth="password", password=PASSWORDS["alice"])
    assert r.rc == 0 and r.out == "pw-ok\n", r


def test_keyboard_interactive_login_works(gateway):
    t = gateway.spawn("alice@web01", "echo kbd-ok", auth="kbdint")
    try:
        t.expect(r"(?i)password", what="a keyboard-interactive password prompt")
        t.type(PASSWORDS["alice"])
        t.expect(r"kbd-ok", what="command output after keyboard-interactive login")
        assert t.wait_exit() == 0
    finally:
        t.close()


def test_wrong_password_is_refused(make_gateway):
    g = make_gateway()
    r = g.ssh("alice@web01", "echo nope", auth="password", password="wrong-password")
    assert r.rc == 255, r
    assert "Permission denied" in r.err, r
    assert "nope" not in r.out


def test_unknown_key_is_refused(make_gateway, keys):
    g = make_gateway()
    r = g.ssh("alice@web01", "echo nope", key=keys.intruder)
    assert r.rc == 255, r
    assert "Permission denied" in r.err, r


def test_another_users_key_does_not_log_in_as_alice(make_gateway, keys):
    g = make_gateway()
    r = g.ssh("alice@web01", "echo nope", key=keys.bob)
    assert r.rc == 255 and "Permission denied" in r.err, r


def test_lockout_after_five_wrong_passwords_refuses_the_right_one(make_gateway):
    g = make_gateway()
    for i in range(5):
        r = g.ssh("alice@web01", "true", auth="password", password=f"wrong-{i}")
        assert r.rc == 255 and "Permission denied" in r.err, r
    r = g.ssh("alice@web01", "echo let-in", auth="password", password=PASSWORDS["alice"])
    assert r.rc != 0 and "let-in" not in r.out, f"right password accepted during lockout:\n{r}"
    assert "Permission denied" in r.err, r
    # another user is not locked out: bob's login succeeds (he then has no grant on web01)
    r = g.ssh("bob@web01", "echo bob-ran", auth="password", password=PASSWORDS["bob"])
    assert "Permission denied" not in r.err, f"bob was locked out too:\n{r}"
    assert "no grant" in r.err.lower(), r
    assert g.alive()


# --------------------------------------------------------------------------------------------
# errors: non-zero exit, one clear line, gateway keeps serving


def _assert_one_clear_error(r, phrase):
    assert r.rc != 0, r
    assert "should-not-run" not in r.out, r
    lines = gateway_lines(r.err)
    assert any(phrase in l.lower() for l in lines), f"no line saying {phrase!r}:\n{r}"
    assert len(lines) == 1, f"expected ONE line from the gateway, got {len(lines)}: {lines}\n{r}"


@pytest.mark.parametrize("login, phrase", [
    ("alice@nope", "unknown asset"),
    ("alice@web02", "no grant"),
    ("alice@down01", "unreachable"),
    ("alice@refused01", "refused"),
    ("alice@badpin01", "host key"),
], ids=["unknown_asset", "no_grant", "asset_down", "account_refused_by_asset", "wrong_host_key_pin"])
def test_error_is_one_clear_line_and_gateway_keeps_serving(gateway, login, phrase):
    r = gateway.ssh(login, "echo should-not-run")
    _assert_one_clear_error(r, phrase)
    gateway.assert_serving()


def test_user_without_grants_gets_no_grant(gateway, keys):
    r = gateway.ssh("bob@web01", "echo should-not-run", key=keys.bob)
    _assert_one_clear_error(r, "no grant")


def test_pinned_host_key_matching_works(gateway):
    r = gateway.ssh("alice@pinned01", "echo pinned-ok")
    assert r.rc == 0 and r.out == "pinned-ok\n", r


def test_changed_asset_host_key_is_refused_after_first_use(make_asset, make_gateway, keys):
    a = make_asset("re-keyed asset sshd")
    g = make_gateway(
        extra_assets=[{"name": "flappy01", "host": "127.0.0.1", "ssh_port": a.port,
                       "accounts": [{"name": OS_USER, "private_key_file": str(keys.account)}]}],
        extra_grants=[{"users": ["alice"], "assets": ["flappy01"]}])
    r = g.ssh("alice@flappy01", "echo first-use")
    assert r.rc == 0 and r.out == "first-use\n", f"trust on first use failed:\n{r}"
    a.restart(new_host_key=True)
    for _ in range(2):  # the failed attempt must not learn the new key either
        r = g.ssh("alice@flappy01", "echo should-not-run")
        _assert_one_clear_error(r, "host key")
    g.assert_serving()


# --------------------------------------------------------------------------------------------
# forwarding is refused (forwarded traffic would bypass the recorder)


def test_local_port_forwarding_is_refused(gateway, asset_sshd, tmp_path):
    from conftest import client_env
    lport = free_port()
    err_path = tmp_path / "ssh-L.stderr"
    argv = gateway.ssh_argv("alice@web01", options=["-N", "-L", f"{lport}:127.0.0.1:{asset_sshd.port}"])
    with open(err_path, "wb") as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=client_env())
    try:
        sock = None
        deadline = time.monotonic() + 30
        while sock is None and time.monotonic() < deadline:
            assert p.poll() is None, f"ssh -L exited early (rc={p.returncode}):\n{err_path.read_text()}"
            try:
                sock = socket.create_connection(("127.0.0.1", lport), timeout=2)
            except OSError:
                time.sleep(0.2)
        assert sock is not None, f"ssh never listened on the local port:\n{err_path.read_text()}"
        data, closed = b"", False
        with sock:
            sock.settimeout(15)
            try:
                while len(data) < 4096:
                    chunk = sock.recv(4096)
                    if not chunk:
                        closed = True
                        break
                    data += chunk
            except OSError:
                pass
        assert b"SSH-" not in data, f"the forward reached the asset (got {data[:80]!r})"
        assert closed, "the forwarded connection was neither refused nor closed within 15 s"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "open failed" not in err_path.read_text():
            time.sleep(0.1)
        text = err_path.read_text()
        assert "open failed" in text or "administratively prohibited" in text, text
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def test_remote_port_forwarding_is_refused(gateway, asset_sshd):
    rport = free_port()
    r = gateway.ssh("alice@web01", options=["-N", "-o", "ExitOnForwardFailure=yes",
                                            "-R", f"{rport}:127.0.0.1:{asset_sshd.port}"], timeout=30)
    assert r.rc != 0, r
    assert "remote port forwarding failed" in r.err, r


# --------------------------------------------------------------------------------------------
# load


def test_200_concurrent_sessions_each_get_their_own_output(make_gateway, asset_sshd, keys, plain_shell_account):
    n_sessions = 200
    gateway = make_gateway(
        extra_assets=[{"name": "load01", "host": "127.0.0.1", "ssh_port": asset_sshd.port,
                       "accounts": [{"name": plain_shell_account, "private_key_file": str(keys.account)}]}],
        extra_grants=[{"users": ["alice"], "assets": ["load01"]}])

    def one(n):
        try:
            return n, gateway.ssh("alice@load01", f"echo {n}", options=["-o", "ConnectTimeout=30"], timeout=60)
        except AssertionError as e:  # timeout
            return n, str(e)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=n_sessions) as pool:
        results = list(pool.map(one, range(n_sessions)))
    elapsed = time.monotonic() - start
    bad = [(n, r) for n, r in results if isinstance(r, str) or r.rc != 0 or r.out != f"{n}\n"]
    assert not bad, (f"{len(bad)} of {n_sessions} sessions failed (in {elapsed:.0f} s); first ones:\n"
                     + "\n".join(f"[{n}] {r}" for n, r in bad[:3]))
    assert elapsed < 180, f"{n_sessions} sessions took {elapsed:.0f} s"
    gateway.assert_serving()


# --------------------------------------------------------------------------------------------
# check-config


def _bad_config(path: Path, alice_hash: str) -> list[tuple[int, str]]:
    lines = [
        "data_dir: var",                      # 1
        "listen:",                            # 2
        '  ssh: "127.0.0.1:2222"',            # 3
        "colour: blue",                       # 4  unknown key
        "users:",                             # 5
        "  - name: alice",                    # 6
        f'    password_hash: "{alice_hash}"',  # 7
        "assets:",                            # 8
        "  - name: web01",                    # 9
        "    host: 127.0.0.1",                # 10
        "    accounts:",                      # 11
        f"      - name: {OS_USER}",           # 12
        "        password: hunter2",          # 13 plaintext password on an account
        "grants:",                            # 14
        "  - users: [alice, mallory]",        # 15 no such user
        "    assets: [web01]",                # 16
    ]
    path.write_text("\n".join(lines) + "\n")
    return [(4, "colour"), (13, "password"), (15, "mallory")]


def test_check_config_reports_each_problem_with_file_line_col(gatehouse, password_hashes, tmp_path):
    cfg = tmp_path / "bad.yaml"
    expected = _bad_config(cfg, password_hashes["alice"])
    r = run([gatehouse, "check-config", "--config", cfg], timeout=30)
    assert r.rc != 0, r
    output = r.out + r.err
    for line, word in expected:
        rx = rf"^\S*{re.escape(cfg.name)}:{line}:\d+:.*{word}"
        assert re.search(rx, output, re.M), f"no problem reported as {cfg.name}:{line}:COL mentioning {word!r}:\n{r}"


def test_serve_refuses_a_bad_config(gatehouse, password_hashes, tmp_path):
    cfg = tmp_path / "bad.yaml"
    _bad_config(cfg, password_hashes["alice"])
    r = run([gatehouse, "serve", "--config", cfg], timeout=30)
    assert r.rc != 0, r
    assert f"{cfg.name}:4:" in r.out + r.err, r


def test_check_config_accepts_a_good_config(gateway, gatehouse):
    r = run([gatehouse, "check-config", "--config", gateway.config_path], timeout=30)
    assert r.rc == 0, r
