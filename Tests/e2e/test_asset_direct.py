"""Checks of the test harness itself, without the gateway: the asset sshd behaves as the gateway
tests assume. If one of these fails, gateway test failures say nothing about the gateway."""

from pathlib import Path

import pytest

from conftest import BANNER_TEXT, OS_USER, fingerprint, to_yaml


def test_asset_runs_commands_for_the_stored_account(direct):
    r = direct("echo hi; id -un")
    assert r.rc == 0, r
    assert r.out == f"hi\n{OS_USER}\n", r


def test_asset_shows_its_banner_on_stderr(direct):
    r = direct("true")
    assert r.rc == 0, r
    assert BANNER_TEXT in r.err and BANNER_TEXT not in r.out, r


def test_asset_accepts_gh_test_environment(direct):
    r = direct("echo $GH_TEST_X", options=["-o", "SetEnv=GH_TEST_X=42"])
    assert r.out == "42\n", r


def test_asset_gives_a_pty(direct, asset_pty):
    r = direct("tty", options=["-tt"])
    assert r.rc == 0 and r.out.startswith("/dev/"), r


def test_asset_direct_signal_exit_is_255(direct):
    r = direct("kill -TERM $$")
    assert r.rc == 255, r


def test_asset_rejects_a_key_not_in_authorized_keys(asset_sshd, keys, tmp_path):
    from conftest import run
    r = run(asset_sshd.ssh_argv("true", key=keys.rogue_account, known_hosts=tmp_path / "kh"))
    assert r.rc == 255 and "Permission denied" in r.err, r


def test_asset_restart_with_new_host_key_keeps_port(make_asset, keys, tmp_path):
    from conftest import run
    a = make_asset()
    before, port = a.fingerprint, a.port
    a.restart(new_host_key=True)
    assert a.port == port and a.fingerprint != before
    assert fingerprint(Path(str(a.host_keys["ed25519"]) + ".pub")) == a.fingerprint
    r = run(a.ssh_argv("echo back", key=keys.account, known_hosts=tmp_path / "kh"))
    assert r.out == "back\n", r
    a.stop()
    r = run(a.ssh_argv("true", key=keys.account, known_hosts=tmp_path / "kh"))
    assert r.rc == 255 and "refused" in r.err.lower(), r


def test_yaml_emitter_round_trips():
    yaml = pytest.importorskip("yaml")
    doc = {"data_dir": "var", "listen": {"ssh": "127.0.0.1:1"},
           "users": [{"name": "a", "password_hash": "$argon2id$v=19$x", "authorized_keys": ["ssh-ed25519 AAAA a"]}],
           "assets": [{"name": "w", "ssh_port": 22, "accounts": [{"name": "r", "private_key_file": "/k"}]}],
           "grants": [{"users": ["a"], "assets": ["w"], "accounts": []}]}
    assert yaml.safe_load(to_yaml(doc)) == doc
