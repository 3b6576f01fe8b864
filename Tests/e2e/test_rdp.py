"""RDP through the gateway with real peers: xfreerdp -> Gatehouse -> freerdp-shadow-cli (NLA).

What a user and an auditor see: the asset's screen on the user's client, keys and clicks on
the asset, the session in the records with a desktop recording whose last frame is the
asset's screen and an MP4 export, terminate, and refusals with the reason on the client.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PASSWORDS, Gateway, _ITEM_PROCS, free_port
from rdp import ASSET_PASSWORD, ASSET_USER, RDPUser, ShadowAsset, matches_asset, missing_tools
from test_live import api, token_for

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"RDP test tools missing: {missing_tools()}")

# xfreerdp's exit codes: the server's disconnect reason (MS-RDPBCGR error info) comes back as
# the process's exit code.
EXIT_ADMIN_DISCONNECT = 1       # ERRINFO_RPC_INITIATED_DISCONNECT
EXIT_INSUFFICIENT_PRIVILEGES = 9
EXIT_LOGOFF = 2
EXIT_DENIED = 7                 # ERRINFO_SERVER_DENIED_CONNECTION


@pytest.fixture(scope="module")
def shadow_asset(tmp_path_factory):
    asset = ShadowAsset(tmp_path_factory.mktemp("rdp-asset"))
    asset.start()
    yield asset
    asset.stop()


@pytest.fixture(scope="module")
def tls_asset(tmp_path_factory):
    """An asset that speaks TLS without NLA (as xrdp does)."""
    asset = ShadowAsset(tmp_path_factory.mktemp("rdp-asset-tls"), security="tls")
    asset.start()
    yield asset
    asset.stop()


def start_rdp_gateway(d: Path, gatehouse, shadow_asset, tls_asset, keys, password_hashes, extra_assets=()) -> Gateway:
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "rdp.key"),
                    "-out", str(d / "rdp.crt"), "-days", "2", "-subj", "/CN=gatehouse-test"],
                   check=True, capture_output=True, timeout=60)
    secret = d / "rdpuser.password"
    secret.write_text(ASSET_PASSWORD + "\n")
    secret.chmod(0o600)
    account = [{"name": ASSET_USER, "password_file": str(secret)}]
    config = {
        "data_dir": "var",
        "listen": {"ssh": f"127.0.0.1:{free_port()}", "web": f"127.0.0.1:{free_port()}", "rdp": f"127.0.0.1:{free_port()}"},
        "rdp": {"certificate": str(d / "rdp.crt"), "private_key": str(d / "rdp.key"), "nla": True},
        "users": [
            {"name": "alice", "password_hash": password_hashes["alice"]},
            {"name": "bob", "password_hash": password_hashes["bob"]},
            {"name": "adam", "password_hash": password_hashes["adam"], "role": "admin"},
        ],
        "assets": [
            {"name": "desk01", "host": "127.0.0.1", "rdp_port": shadow_asset.port, "accounts": account},
            {"name": "desk02", "host": "127.0.0.1", "rdp_port": shadow_asset.port, "accounts": account},
            {"name": "tls01", "host": "127.0.0.1", "rdp_port": tls_asset.port, "accounts": account},
            # Pinned to a certificate the asset does not have.
            {"name": "pinned01", "host": "127.0.0.1", "rdp_port": shadow_asset.port,
             "rdp_certificate": ":".join(["ab"] * 32), "accounts": account},
            {"name": "ssh01", "host": "127.0.0.1", "ssh_port": 22, "accounts": account},
            *extra_assets,
        ],
        "grants": [{"users": ["alice"], "assets": ["desk01", "tls01", "pinned01", "ssh01", *(a["name"] for a in extra_assets)]}],
    }
    g = Gateway(gatehouse, d, config, keys, name=f"RDP gateway ({d.name})")
    g.rdp_port = int(config["listen"]["rdp"].rsplit(":", 1)[1])
    _ITEM_PROCS.append(g)
    return g.start()


@pytest.fixture(scope="module")
def rdp_gateway(tmp_path_factory, gatehouse, shadow_asset, tls_asset, keys, password_hashes):
    g = start_rdp_gateway(tmp_path_factory.mktemp("rdp-gateway"), gatehouse, shadow_asset, tls_asset, keys, password_hashes)
    yield g
    g.stop()


@pytest.fixture
def rdp_user(tmp_path):
    users = []

    def make(name="user"):
        u = RDPUser(tmp_path / name, name)
        users.append(u)
        return u

    yield make
    for u in users:
        u.stop()


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def rdp_sessions(gw, token, **query):
    q = "&".join(f"{k}={v}" for k, v in {"protocol": "rdp", **query}.items())
    status, page, _ = api(gw, "GET", f"/api/v1/sessions?{q}", token=token)
    assert status == 200, page
    return page["sessions"]


def test_desktop_relayed_recorded_exported_and_terminated(rdp_gateway, shadow_asset, rdp_user, tmp_path):
    gw = rdp_gateway
    admin = token_for(gw, "adam")
    user = rdp_user().connect(gw.rdp_port, "alice#desk01", PASSWORDS["alice"], "/sec:tls")

    # The user sees the asset's screen through the gateway.
    wrong = user.wait_for_screen(tmp_path / "user-screen.png")
    assert not wrong, f"the user's screen does not show the asset's picture: {wrong}\n{user.log_text()[-3000:]}"

    # Keys and clicks reach the asset.
    user.type("gh")
    user.click(500, 400)
    events = wait_for(lambda: (e := shadow_asset.events()) and "ButtonPress" in e and "(keysym 0x68, h)" in e and e,
                      what="the user's keys and click on the asset's screen")
    assert "(keysym 0x67, g)" in events

    # The session is online, as RDP, with the client and the screen size.
    online = wait_for(lambda: rdp_sessions(gw, admin, state="online"), what="the online RDP session")
    s = online[0]
    assert (s["user"], s["asset"], s["account"], s["protocol"]) == ("alice", "desk01", ASSET_USER, "rdp"), s
    assert "build" in s["client_software"] and s["program"] == "desktop 1024x768", s

    # Terminate: the client is told an administrator disconnected it (xfreerdp 2 prints the
    # reason, then exits as for a logoff because the server's ultimatum says "user requested").
    status, answer, _ = api(gw, "POST", f"/api/v1/sessions/{s['id']}/terminate", token=admin)
    assert status == 200, answer
    rc = user.wait(20)
    assert rc in (EXIT_ADMIN_DISCONNECT, EXIT_LOGOFF), f"exit {rc}: {user.log_text()[-2000:]}"
    assert "initiated by an administrative tool" in user.log_text(), user.log_text()[-3000:]

    ended = wait_for(lambda: [x for x in rdp_sessions(gw, admin, state="terminated") if x["id"] == s["id"]],
                     what="the terminated session in the records")[0]
    assert ended["terminated_by"] == "adam", ended
    # Bytes both ways: the desktop to the user, the user's keys and clicks (and the protocol) to the asset.
    assert ended["bytes_out"] > 10_000 and ended["bytes_in"] > 0, ended
    status, details, _ = api(gw, "GET", f"/api/v1/sessions/{s['id']}/activities", token=admin)
    kinds = [a["kind"] for a in details["activities"]]
    assert {"connected", "authenticated", "upstream_connected", "terminated"} <= set(kinds), kinds

    # The recording replays to the asset's screen: its MP4 export has frames, the last one
    # the asset's picture.
    mp4 = tmp_path / "session.mp4"
    r = subprocess.run([str(gw.binary), "sessions", "export", s["id"], "--mp4", str(mp4), "--config", str(gw.config_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    frames = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                             "stream=nb_read_frames,width,height", "-of", "json", str(mp4)],
                            capture_output=True, text=True, timeout=60, check=True)
    stream = json.loads(frames.stdout)["streams"][0]
    assert (stream["width"], stream["height"]) == (1024, 768), stream
    assert int(stream["nb_read_frames"]) >= 5, stream  # 10 frames a second of a session of a second or more
    last = tmp_path / "last-frame.png"
    subprocess.run(["ffmpeg", "-v", "error", "-sseof", "-0.5", "-i", str(mp4), "-update", "1", "-y", str(last)],
                   check=True, capture_output=True, timeout=60)
    assert not matches_asset(last, tolerance=32), "the recording's last frame is not the asset's screen"


@pytest.mark.parametrize("login,password,reason", [
    ("alice#desk01", "not-the-password", "wrong password"),
    ("alice#nosuch", PASSWORDS["alice"], 'unknown asset "nosuch"'),
    ("alice#desk02", PASSWORDS["alice"], 'no grant for asset "desk02"'),
    ("bob#desk01", PASSWORDS["bob"], 'no grant for asset "desk01"'),
])
def test_refusals_reach_the_client(rdp_gateway, rdp_user, login, password, reason):
    start = rdp_gateway.log_size()
    user = rdp_user().connect(rdp_gateway.rdp_port, login, password)
    assert user.wait(30) == EXIT_INSUFFICIENT_PRIVILEGES, user.log_text()[-3000:]
    log = rdp_gateway.log_text(start)
    assert "rdp login refused" in log and reason in log, log[-3000:]


def test_routing_token_names_the_asset(rdp_gateway, rdp_user, tmp_path):
    user = rdp_user().connect(rdp_gateway.rdp_port, "alice", PASSWORDS["alice"], "/load-balance-info:Cookie: msts=desk01")
    wrong = user.wait_for_screen(tmp_path / "screen.png")
    assert not wrong, f"no desktop through the routing token: {wrong}\n{user.log_text()[-3000:]}"


def test_tls_asset_without_nla(rdp_gateway, rdp_user, tmp_path):
    user = rdp_user().connect(rdp_gateway.rdp_port, "alice#tls01", PASSWORDS["alice"])
    wrong = user.wait_for_screen(tmp_path / "screen.png")
    assert not wrong, f"no desktop from the TLS asset: {wrong}\n{user.log_text()[-3000:]}"


@pytest.mark.parametrize("asset,reason", [
    ("pinned01", "the asset's certificate changed"),
    ("ssh01", 'asset "ssh01" takes no RDP sessions'),
])
def test_asset_refusals_are_recorded_and_reach_the_client(rdp_gateway, rdp_user, asset, reason):
    admin = token_for(rdp_gateway, "adam")
    user = rdp_user().connect(rdp_gateway.rdp_port, f"alice#{asset}", PASSWORDS["alice"])
    assert user.wait(30) == EXIT_DENIED, user.log_text()[-3000:]
    failed = wait_for(lambda: [x for x in rdp_sessions(rdp_gateway, admin, state="failed") if x["asset"] == asset],
                      what="the failed session in the records")
    assert reason in failed[0]["reason"], failed[0]


def rdp_password(gw, user):
    r = subprocess.run([str(gw.binary), "rdp-password", "--user", user, "--config", str(gw.config_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_nla_with_a_one_time_password(rdp_gateway, rdp_user, tmp_path):
    """mstsc's way in: NLA, checked against a one-time RDP password (used up by the session)."""
    gw = rdp_gateway
    password = rdp_password(gw, "alice")
    user = rdp_user("nla").connect(gw.rdp_port, "alice#desk01", password, "/sec:nla")
    wrong = user.wait_for_screen(tmp_path / "screen.png")
    assert not wrong, f"no desktop through NLA: {wrong}\n{user.log_text()[-3000:]}"
    admin = token_for(gw, "adam")
    s = wait_for(lambda: rdp_sessions(gw, admin, state="online"), what="the NLA session")[0]
    status, details, _ = api(gw, "GET", f"/api/v1/sessions/{s['id']}/activities", token=admin)
    assert any("one-time RDP password (NLA)" in a["detail"] for a in details["activities"]), details
    user.stop()

    # Used up: the same password again, or the user's own password through NLA, is refused.
    for attempt, secret in (("again", password), ("own", PASSWORDS["alice"])):
        start = gw.log_size()
        again = rdp_user(f"nla-{attempt}").connect(gw.rdp_port, "alice#desk01", secret, "/sec:nla")
        assert again.wait(30) != 0, again.log_text()[-3000:]
        assert "NLA without a valid one-time RDP password" in gw.log_text(start), gw.log_text(start)[-3000:]


def test_ssh_to_a_desktop_only_asset_is_refused(rdp_gateway):
    r = rdp_gateway.ssh("alice@desk01", "true", auth="password", password=PASSWORDS["alice"])
    assert r.rc != 0 and 'asset "desk01" takes no SSH sessions' in r.err, str(r)


def test_a_gateway_killed_mid_session_keeps_the_recording(tmp_path, gatehouse, shadow_asset, tls_asset, keys,
                                                        password_hashes, rdp_user):
    """kill -9 while a desktop is recorded: on restart the session is interrupted and its
    recording still replays (the torn last record is dropped)."""
    gw = start_rdp_gateway(tmp_path / "gw", gatehouse, shadow_asset, tls_asset, keys, password_hashes)
    try:
        user = rdp_user("killed").connect(gw.rdp_port, "alice#desk01", PASSWORDS["alice"])
        assert not user.wait_for_screen(tmp_path / "screen.png")
        admin = token_for(gw, "adam")
        s = wait_for(lambda: rdp_sessions(gw, admin, state="online"), what="the online session")[0]
        time.sleep(1.5)  # a second or more of recording
        gw.proc.kill()
        gw.proc.wait(10)
        user.wait(30)
        gw.start()
        s = wait_for(lambda: [x for x in rdp_sessions(gw, admin, state="interrupted") if x["id"] == s["id"]],
                     what="the interrupted session")[0]
        mp4 = tmp_path / "interrupted.mp4"
        r = subprocess.run([str(gw.binary), "sessions", "export", s["id"], "--mp4", str(mp4), "--config", str(gw.config_path)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        last = tmp_path / "last.png"
        subprocess.run(["ffmpeg", "-v", "error", "-sseof", "-0.5", "-i", str(mp4), "-update", "1", "-y", str(last)],
                       check=True, capture_output=True, timeout=60)
        assert not matches_asset(last, tolerance=32), "the interrupted recording does not end on the asset's screen"
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def xrdp_asset(tmp_path_factory):
    from rdp import XrdpAsset, xrdp_missing
    if xrdp_missing():
        pytest.skip(f"xrdp test asset unavailable: {xrdp_missing()}")
    asset = XrdpAsset(tmp_path_factory.mktemp("xrdp"))
    _ITEM_PROCS.append(asset)
    asset.start()
    yield asset
    asset.stop()


def test_xrdp_asset_and_clipboard_text_both_ways(tmp_path, gatehouse, shadow_asset, tls_asset, xrdp_asset, keys,
                                                 password_hashes, rdp_user):
    """xrdp (TLS, a real login and clipboard): the desktop comes through, clipboard text goes
    both ways through the gateway and each paste is in the records."""
    from rdp import XRDP_DESKTOP, clipboard_get, clipboard_set, close_to, pixel
    secret = tmp_path / "xrdp.password"
    secret.write_text(xrdp_asset.password + "\n")
    secret.chmod(0o600)
    gw = start_rdp_gateway(tmp_path / "gw", gatehouse, shadow_asset, tls_asset, keys, password_hashes,
                           extra_assets=[{"name": "xrdp01", "host": "127.0.0.1", "rdp_port": xrdp_asset.port,
                                          "accounts": [{"name": xrdp_asset.user, "password_file": str(secret)}]}])
    try:
        user = rdp_user("xrdp").connect(gw.rdp_port, "alice#xrdp01", PASSWORDS["alice"], "+clipboard")
        shot = tmp_path / "xrdp.png"

        def painted():
            user.display.screenshot(shot)
            return close_to(pixel(shot, 500, 400), XRDP_DESKTOP, 8)
        wait_for(painted, timeout=40, what="xrdp's desktop on the user's screen")
        wait_for(xrdp_asset.session_display, what="the xrdp session's display")

        clipboard_set(user.display, "from the user: ünïcode ✓")
        wait_for(lambda: xrdp_asset.as_user("xclip", "-o", "-selection", "clipboard").stdout == "from the user: ünïcode ✓",
                 timeout=20, what="the user's clipboard text on the asset")
        xrdp_asset.as_user("xclip", "-selection", "clipboard", "-i", input="from the asset", capture=False)
        wait_for(lambda: clipboard_get(user.display) == "from the asset", timeout=20,
                 what="the asset's clipboard text on the user's side")

        admin = token_for(gw, "adam")
        s = wait_for(lambda: rdp_sessions(gw, admin, state="online"), what="the xrdp session")[0]
        status, details, _ = api(gw, "GET", f"/api/v1/sessions/{s['id']}/activities", token=admin)
        clip = [a["detail"] for a in details["activities"] if a["kind"] == "clipboard"]
        assert any("pasted on the asset" in d and "ünïcode ✓" in d for d in clip), clip
        assert any("pasted by the user" in d and "from the asset" in d for d in clip), clip
    finally:
        gw.stop()


def test_rdp_password_from_the_api(rdp_gateway, rdp_user, tmp_path):
    """A user gets their own one-time RDP password from the API (the console's "RDP password")."""
    gw = rdp_gateway
    status, issued, headers = api(gw, "POST", "/api/v1/rdp-password", token=token_for(gw, "alice"))
    assert status == 200, issued
    assert issued["username"] == "alice#ASSET" and headers.get("Cache-Control") == "no-store", issued
    user = rdp_user("api-nla").connect(gw.rdp_port, "alice#desk01", issued["password"], "/sec:nla")
    wrong = user.wait_for_screen(tmp_path / "screen.png")
    assert not wrong, f"no desktop with the API's one-time password: {wrong}\n{user.log_text()[-3000:]}"
