"""Real RDP peers for the end-to-end tests.

The asset is FreeRDP's shadow server (freerdp-shadow-cli, Debian's freerdp2-shadow-x11) on
its own Xvfb display, with NLA against a SAM file made by winpr-hash, its screen painted with
a known picture. The user is xfreerdp (freerdp2-x11) on a second Xvfb display. Screens are
read back with xwd + ImageMagick; keys and clicks are typed with xdotool and observed on the
asset's display with xev.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import LoggedProcess, free_port

ASSET_PASSWORD = "Asset-Rdp-Secret-7"
ASSET_USER = "rdpuser"
# The asset's picture: a blue desktop, an orange rectangle and a green disc.
BLUE, ORANGE, GREEN = (0x33, 0x66, 0xCC), (0xFF, 0x88, 0x00), (0x22, 0xAA, 0x44)
PROBES = {(500, 400): BLUE, (200, 200): ORANGE, (700, 500): GREEN}
REQUIRED = ["Xvfb", "xwd", "convert", "freerdp-shadow-cli", "xfreerdp", "winpr-hash", "xdotool", "xev"]


def missing_tools() -> list[str]:
    return [t for t in REQUIRED if shutil.which(t) is None]


def wait_port(port: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Display(LoggedProcess):
    """An Xvfb display that keeps what is drawn on it (-noreset)."""

    def __init__(self, workdir: Path, name: str, size=(1024, 768)):
        self.name = f"Xvfb ({name})"
        self.dir = workdir
        self.log_path = workdir / f"xvfb-{name}.log"
        self.size = size

    def start(self):
        read_fd, write_fd = os.pipe()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{self.size[0]}x{self.size[1]}x24",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_fd,), stdout=log, stderr=log, start_new_session=True)
        os.close(write_fd)
        log.close()
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        assert number, f"Xvfb did not start:\n{self.log_text()}"
        self.display = f":{number}"
        return self

    def env(self, **extra) -> dict:
        return {**os.environ, "DISPLAY": self.display, **extra}

    def run(self, *argv, timeout=30, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run(list(argv), env=self.env(), capture_output=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"{argv} failed: {r.stderr.decode(errors='replace')}"
        return r

    def screenshot(self, path: Path) -> Path:
        xwd = subprocess.run(["xwd", "-root", "-silent"], env=self.env(), capture_output=True, timeout=30, check=True)
        subprocess.run(["convert", "xwd:-", str(path)], input=xwd.stdout, capture_output=True, timeout=30, check=True)
        return path

    def stop(self):
        self._terminate()


def pixel(png: Path, x: int, y: int) -> tuple[int, int, int]:
    r = subprocess.run(["convert", str(png), "-format", f"%[fx:int(255*p{{{x},{y}}}.r)],%[fx:int(255*p{{{x},{y}}}.g)],%[fx:int(255*p{{{x},{y}}}.b)]", "info:"],
                       capture_output=True, text=True, timeout=30, check=True)
    return tuple(int(v) for v in r.stdout.strip().split(","))


def close_to(a, b, tolerance=24) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def matches_asset(png: Path, offset=(0, 0), tolerance=24) -> dict:
    """The probes that do NOT match the asset's picture (empty: it matches)."""
    wrong = {}
    for (x, y), colour in PROBES.items():
        got = pixel(png, x + offset[0], y + offset[1])
        if not close_to(got, colour, tolerance):
            wrong[(x, y)] = got
    return wrong


class ShadowAsset(LoggedProcess):
    """freerdp-shadow-cli sharing a painted Xvfb display, NLA only, one account."""

    def __init__(self, workdir: Path, security: str = "nla"):
        self.name = f"asset (freerdp-shadow-cli, {security})"
        self.security = security
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "shadow.log"
        self.port = free_port()
        self.display = Display(workdir, "asset")
        self.events_path = workdir / "xev.log"
        self.xev = None

    def start(self):
        self.display.start()
        picture = self.dir / "asset.png"
        subprocess.run(["convert", "-size", "1024x768", "xc:#3366cc", "-fill", "#ff8800", "-draw", "rectangle 100,100 400,300",
                        "-fill", "#22aa44", "-draw", "circle 700,500 800,500", str(picture)], check=True, timeout=30)
        # display(1) exits 1 even when it painted; the screenshot below is the check.
        self.display.run("display", "-window", "root", str(picture), check=False)
        wrong = matches_asset(self.display.screenshot(self.dir / "asset-screen.png"))
        assert not wrong, f"the asset's display was not painted: {wrong}"
        sam = self.dir / "sam"
        line = subprocess.run(["winpr-hash", "-u", ASSET_USER, "-p", ASSET_PASSWORD, "-f", "sam"],
                              capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        sam.write_text(line + "\n")
        # Keys and clicks that reach the asset's screen: xev on the root window.
        events = open(self.events_path, "wb")
        self.xev = subprocess.Popen(["stdbuf", "-oL", "xev", "-root", "-event", "keyboard", "-event", "button"],
                                    env=self.display.env(), stdout=events, stderr=subprocess.STDOUT, start_new_session=True)
        events.close()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["freerdp-shadow-cli", f"/port:{self.port}", "/bind-address:127.0.0.1", f"/sec:{self.security}", f"/sam-file:{sam}", *([] if self.security == "nla" else ["-auth"])],
            env=self.display.env(XDG_CONFIG_HOME=str(self.dir / "xdg")), stdout=log, stderr=log, start_new_session=True)
        log.close()
        assert wait_port(self.port), f"shadow server not listening:\n{self.log_text()}"
        return self

    def events(self) -> str:
        return self.events_path.read_text(errors="replace")

    def stop(self):
        self._terminate()
        if self.xev and self.xev.poll() is None:
            self.xev.kill()
            self.xev.wait(5)
        self.display.stop()


class RDPUser(LoggedProcess):
    """xfreerdp on its own Xvfb display."""

    def __init__(self, workdir: Path, name="user"):
        self.name = f"xfreerdp ({name})"
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"xfreerdp-{name}.log"
        self.display = Display(workdir, name, size=(1280, 1024))
        self.display.start()

    def connect(self, port: int, username: str, password: str, *extra):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["xfreerdp", f"/v:127.0.0.1:{port}", f"/u:{username}", f"/p:{password}", "/cert:ignore",
             *([] if any(e.startswith("/sec:") for e in extra) else ["/sec:tls"]),
             "/size:1024x768", "/bpp:32", "-gfx", *extra],
            env=self.display.env(), stdout=log, stderr=log, start_new_session=True)
        log.close()
        return self

    def wait(self, timeout=30) -> int:
        return self.proc.wait(timeout)

    def wait_for_screen(self, path: Path, timeout=30) -> dict:
        """Waits until the user's screen shows the asset's picture; returns the last mismatch."""
        deadline = time.monotonic() + timeout
        wrong = {"no screenshot": None}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            self.display.screenshot(path)
            wrong = matches_asset(path)
            if not wrong:
                return {}
            time.sleep(0.5)
        return wrong

    def window(self) -> str:
        r = self.display.run("xdotool", "search", "--class", "xfreerdp", check=False)
        ids = r.stdout.decode().split()
        assert ids, "no xfreerdp window"
        return ids[-1]

    def type(self, text: str):
        w = self.window()
        self.display.run("xdotool", "windowfocus", "--sync", w)
        self.display.run("xdotool", "type", "--delay", "80", text)

    def click(self, x: int, y: int):
        self.display.run("xdotool", "mousemove", "--sync", str(x), str(y))
        self.display.run("xdotool", "click", "1")

    def stop(self):
        self._terminate()
        self.display.stop()


XRDP_TOOLS = ["xrdp", "xrdp-sesman", "xclip", "runuser", "useradd"]
XRDP_DESKTOP = (0x33, 0x66, 0xCC)


def xrdp_missing() -> list[str]:
    missing = [t for t in XRDP_TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root (xrdp logs in a local account it creates)")
    return missing


class XrdpAsset(LoggedProcess):
    """xrdp 0.9 + xorgxrdp with a throwaway local account: a TLS-only asset with a clipboard
    (chansrv). sesman's port (3350) is compiled in, so one per machine."""

    def __init__(self, workdir: Path):
        self.name = "asset (xrdp)"
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "xrdp.out"
        self.port = free_port()
        self.user = f"ghx{os.getpid() % 100000}"
        self.password = "Xrdp-" + os.urandom(9).hex()
        self.sesman = None

    def _configs(self):
        d = self.dir
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                        "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=xrdp-test"],
                       check=True, capture_output=True, timeout=60)
        # In the account's home: the test's own directories are closed to it.
        wm = Path(f"/home/{self.user}/startwm.sh")
        wm.write_text("#!/bin/sh\nxsetroot -solid '#3366cc'\nexec sleep infinity\n")
        wm.chmod(0o755)
        (d / "xrdp.ini").write_text(f"""[Globals]
ini_version=1
fork=false
port=tcp://127.0.0.1:{self.port}
security_layer=tls
crypt_level=none
certificate={d}/cert.pem
key_file={d}/key.pem
ssl_protocols=TLSv1.2, TLSv1.3
autorun=Xorg
allow_channels=true
max_bpp=24
[Logging]
LogFile={d}/xrdp.log
LogLevel=INFO
EnableSyslog=false
[Channels]
rdpdr=false
rdpsnd=false
drdynvc=false
cliprdr=true
rail=false
xrdpvr=false
tcutils=false
[Xorg]
name=Xorg
lib=libxup.so
username=ask
password=ask
ip=127.0.0.1
port=-1
code=20
""")
        (d / "sesman.ini").write_text(f"""[Globals]
ListenAddress=127.0.0.1
ListenPort=3350
EnableUserWindowManager=false
DefaultWindowManager={wm}
[Security]
AllowRootLogin=false
MaxLoginRetry=4
AlwaysGroupCheck=false
[Sessions]
X11DisplayOffset=10
MaxSessions=10
KillDisconnected=false
DisconnectedTimeLimit=0
IdleTimeLimit=0
Policy=Default
[Logging]
LogFile={d}/sesman.log
LogLevel=INFO
EnableSyslog=false
[Xorg]
param=/usr/lib/xorg/Xorg
param=-config
param=xrdp/xorg.conf
param=-noreset
param=-nolisten
param=tcp
param=-logfile
param=.xorgxrdp.%s.log
[Chansrv]
FuseMountName=thinclient_drives
FileUmask=077
""")

    def start(self):
        subprocess.run(["userdel", "-r", self.user], capture_output=True, timeout=30)
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", self.user], check=True, capture_output=True, timeout=30)
        subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}\n", text=True, check=True, capture_output=True, timeout=30)
        self._configs()
        subprocess.run(["sh", "/usr/share/xrdp/socksetup"], capture_output=True, timeout=30)
        out = open(self.log_path, "ab")
        self.sesman = subprocess.Popen(["xrdp-sesman", "-n", "-c", str(self.dir / "sesman.ini")], stdout=out, stderr=out,
                                       start_new_session=True)
        self.proc = subprocess.Popen(["xrdp", "-n", "-c", str(self.dir / "xrdp.ini")], stdout=out, stderr=out,
                                     start_new_session=True)
        out.close()
        assert wait_port(self.port), f"xrdp not listening:\n{self.log_text()}"
        return self

    def session_display(self) -> str | None:
        import re
        found = re.findall(r"window manager on display (\d+)", (self.dir / "sesman.log").read_text(errors="replace")
                           if (self.dir / "sesman.log").exists() else "")
        return f":{found[-1]}" if found else None

    def as_user(self, *argv, input: str | None = None, timeout=10, capture=True) -> subprocess.CompletedProcess:
        """Runs a program in the xrdp session. capture=False for programs that stay in the
        background holding their output (xclip -i serving the selection)."""
        display = self.session_display()
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        return subprocess.run(["runuser", "-u", self.user, "--", "env", f"DISPLAY={display}",
                               f"XAUTHORITY=/home/{self.user}/.Xauthority", *argv],
                              input=input, stdout=out, stderr=out, text=True, timeout=timeout)

    def stop(self):
        # Everything sesman starts (Xorg, chansrv, the window manager) is in its process group.
        for p in (self.sesman, self.proc):
            if p and p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
        subprocess.run(["pkill", "-9", "-u", self.user], capture_output=True, timeout=10)
        time.sleep(0.5)
        subprocess.run(["umount", "-l", f"/home/{self.user}/thinclient_drives"], capture_output=True, timeout=10)
        subprocess.run(["userdel", "-r", self.user], capture_output=True, timeout=30)
        self.proc = None


def clipboard_set(display: Display, text: str):
    """Owns the display's CLIPBOARD with `text` (xclip stays in the background to serve it)."""
    subprocess.run(["xclip", "-selection", "clipboard", "-i"], input=text.encode(), env=display.env(), timeout=10, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def clipboard_get(display: Display) -> str:
    r = subprocess.run(["xclip", "-o", "-selection", "clipboard"], env=display.env(), capture_output=True, timeout=10)
    return r.stdout.decode(errors="replace")
