"""Fixtures for Gatehouse end-to-end tests.

Everything here runs real programs: an OpenSSH server plays the asset, the gateway binary
(GATEHOUSE_BIN, default .build/debug/gatehouse) runs with a generated config, and the real
OpenSSH client (ssh, sshpass, pexpect for terminals) connects through it.

No test may hang: every subprocess call has a timeout (<= 60 s) and every pexpect call has one.
Works as root (the asset account is then root) and as a normal user.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]  # Tests/e2e/conftest.py -> repo root
OS_USER = getpass.getuser()
IS_ROOT = os.geteuid() == 0
SSHD_BIN = os.environ.get("SSHD_BIN") or shutil.which("sshd") or "/usr/sbin/sshd"
BANNER_TEXT = "GH-E2E-BANNER: authorised use only, this asset is recorded"
PASSWORDS = {"alice": "alice-Correct-Horse-1", "bob": "bob-Battery-Staple-2",
             "audrey": "audrey-Auditor-Pass-3", "adam": "adam-Admin-Pass-4"}
# Lines the OpenSSH client prints on its own; they are not messages from the gateway.
CLIENT_NOISE = (
    re.compile(r"^Warning: Permanently added "),
    re.compile(r"^Connection to \S+ closed\.?$"),
    re.compile(r"^Disconnected from "),
    re.compile(r"^Connection closed by "),
    re.compile(r"^Shared connection to "),
)
SUBPROCESS_TIMEOUT = 60
PEXPECT_TIMEOUT = 30


def gatehouse_bin() -> Path:
    p = Path(os.environ.get("GATEHOUSE_BIN", ".build/debug/gatehouse"))
    return p if p.is_absolute() else REPO_ROOT / p


# --------------------------------------------------------------------------------------------
# small helpers


@dataclass
class Result:
    argv: list
    rc: int
    out: str
    err: str
    out_bytes: bytes = b""

    def __str__(self) -> str:
        return (f"$ {shlex.join(map(str, self.argv))}\n-> rc={self.rc}\n"
                f"--- stdout ---\n{self.out[-4000:]}\n--- stderr ---\n{self.err[-4000:]}")


def run(argv, *, input: bytes | str | None = None, stdin=None, stdout=None, timeout: float = SUBPROCESS_TIMEOUT,
        env: dict | None = None) -> Result:
    """Runs a command with a timeout; stdin defaults to /dev/null so ssh never waits on a terminal."""
    assert timeout <= SUBPROCESS_TIMEOUT, "keep every subprocess call within 60 s"
    if isinstance(input, str):
        input = input.encode()
    if input is None and stdin is None:
        stdin = subprocess.DEVNULL
    try:
        p = subprocess.run([str(a) for a in argv], input=input, stdin=stdin,
                           stdout=stdout if stdout is not None else subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=env or client_env())
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        err = e.stderr or b""
        raise AssertionError(f"timed out after {timeout} s: {shlex.join(map(str, argv))}\n"
                             f"--- stdout ---\n{out[-4000:].decode(errors='replace')}\n"
                             f"--- stderr ---\n{err[-4000:].decode(errors='replace')}") from None
    ob = p.stdout or b""
    return Result(list(argv), p.returncode, ob.decode(errors="replace"), p.stderr.decode(errors="replace"), ob)


def client_env(**extra) -> dict:
    """Environment for clients: no agent (only the keys we name), a plain terminal type."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "DISPLAY", "SSH_ASKPASS")}
    env["TERM"] = "dumb"  # no bracketed-paste escapes from readline in PTY tests
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_banner_at(host: str, port: int, timeout: float = 2.0) -> bytes | None:
    """Connects and reads the server's identification line; None when nothing listens."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 512:
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return None


def keygen(path: Path, kind: str = "ed25519", comment: str = "") -> Path:
    if path.exists():
        path.unlink()
    Path(str(path) + ".pub").unlink(missing_ok=True)
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path), "-C", comment or path.name]
    if kind == "rsa":
        argv[4:4] = ["-b", "2048"]
    subprocess.run(argv, check=True, timeout=SUBPROCESS_TIMEOUT, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    return path


def fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub), "-E", "sha256"], check=True, capture_output=True,
                         text=True, timeout=SUBPROCESS_TIMEOUT).stdout
    m = re.search(r"(SHA256:[A-Za-z0-9+/=]+)", out)
    assert m, out
    return m.group(1)


def fake_fingerprint() -> str:
    return "SHA256:" + base64.b64encode(os.urandom(32)).decode().rstrip("=")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gateway_lines(stderr: str) -> list[str]:
    """What the user was told, minus OpenSSH client chatter and the asset banner."""
    lines = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line or BANNER_TEXT in line or any(rx.search(line) for rx in CLIENT_NOISE):
            continue
        lines.append(line)
    return lines


def to_yaml(value, indent: int = 0) -> str:
    """Tiny YAML emitter (block style; scalars as JSON, which YAML reads) so PyYAML is not needed."""
    pad = "  " * indent

    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, dict):
            return "{}"
        if isinstance(v, list):
            return "[]"
        return json.dumps(str(v))

    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                out.append(f"{pad}{k}: {scalar(v)}\n")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                text = to_yaml(item, indent + 1)
                out.append(pad + "- " + text[len(pad) + 2:])
            else:
                out.append(f"{pad}- {scalar(item)}\n")
    else:
        out.append(pad + scalar(value) + "\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# logs of helper processes, attached to the report of a failing test

_SESSION_PROCS: list = []  # long-lived (session fixtures)
_ITEM_PROCS: list = []     # started by the running test
_OFFSETS: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _ITEM_PROCS.clear()
    _OFFSETS.clear()
    for p in _SESSION_PROCS:
        _OFFSETS[id(p)] = p.log_size()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for p in list(_SESSION_PROCS) + list(_ITEM_PROCS):
        text = p.log_text(_OFFSETS.get(id(p), 0))
        if len(text) > 12000:
            text = "[...]\n" + text[-12000:]
        rep.sections.append((f"{p.name} log ({rep.when})", text or "(empty)"))


class LoggedProcess:
    name = "process"
    log_path: Path
    proc: subprocess.Popen | None = None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_text(self, start: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _terminate(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


# --------------------------------------------------------------------------------------------
# the asset: a real OpenSSH server


class AssetSSHD(LoggedProcess):
    """OpenSSH server on 127.0.0.1 that accepts the stored account key for the OS user."""

    def __init__(self, workdir: Path, account_pub: Path, name: str = "asset sshd"):
        self.name = name
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = OS_USER
        self.log_path = self.dir / "sshd.log"
        self.authorized_keys = self.dir / "authorized_keys"
        self.authorized_keys.write_text(account_pub.read_text())
        self.banner_file = self.dir / "banner.txt"
        self.banner_file.write_text(BANNER_TEXT + "\n")
        self.config_path = self.dir / "sshd_config"
        self.host_keys = {"ed25519": self.dir / "ssh_host_ed25519_key", "rsa": self.dir / "ssh_host_rsa_key"}
        self.fingerprints: dict[str, str] = {}
        self._make_host_keys()
        self._write_config()

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint of the ed25519 host key."""
        return self.fingerprints["ed25519"]

    def _make_host_keys(self):
        for kind, path in self.host_keys.items():
            keygen(path, kind, f"asset-{kind}")
            self.fingerprints[kind] = fingerprint(Path(str(path) + ".pub"))

    def _write_config(self):
        lines = [
            f"ListenAddress {self.host}:{self.port}",
            *(f"HostKey {p}" for p in self.host_keys.values()),
            # The second entry serves the load-test account (see plain_shell_account), which
            # cannot read the first one in the test's private temp dir.
            f"AuthorizedKeysFile {self.authorized_keys} .ssh/authorized_keys",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            f"PidFile {self.dir / 'sshd.pid'}",
            "UsePAM no",
            "PermitRootLogin yes",
            "AcceptEnv LANG LC_* GH_TEST_*",
            "PrintMotd no",
            "PrintLastLog no",
            f"Banner {self.banner_file}",
            "Subsystem sftp internal-sftp",
            "MaxStartups 1000",
            "MaxSessions 1000",
            "MaxAuthTries 10",
            "LoginGraceTime 60",
            "UseDNS no",
            "AllowTcpForwarding yes",
            "LogLevel VERBOSE",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self):
        if IS_ROOT:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        check = subprocess.run([SSHD_BIN, "-t", "-f", str(self.config_path)], capture_output=True, text=True,
                               timeout=SUBPROCESS_TIMEOUT)
        assert check.returncode == 0, f"sshd -t rejected the asset config:\n{check.stderr}"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SSHD_BIN, "-D", "-e", "-f", str(self.config_path)], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"asset sshd exited with {self.proc.returncode}:\n{self.log_text()}")
            banner = ssh_banner_at(self.host, self.port)
            if banner and banner.startswith(b"SSH-"):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"asset sshd did not start listening on {self.port}:\n{self.log_text()}")

    def stop(self):
        self._terminate()
        # wait for the port to be closed, so "asset down" really is down
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ssh_banner_at(self.host, self.port, 0.5) is not None:
            time.sleep(0.1)

    def restart(self, new_host_key: bool = False):
        """Restarts on the same port; with new_host_key the asset presents different host keys."""
        self.stop()
        if new_host_key:
            self._make_host_keys()
        return self.start()

    def ssh_argv(self, *remote, key: Path, known_hosts: Path, options=()) -> list:
        """Direct connection to the asset with the stored account key (bypassing the gateway)."""
        return ["ssh", "-F", "/dev/null", *options, "-p", str(self.port),
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "ConnectTimeout=10", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-o", "UpdateHostKeys=no", "-i", str(key), "-l", self.user, self.host, *remote]


# --------------------------------------------------------------------------------------------
# keys and password hashes


@dataclass
class Keys:
    dir: Path
    alice: Path = None
    bob: Path = None
    intruder: Path = None      # a key nobody knows
    account: Path = None       # the stored account key, in the asset's authorized_keys
    rogue_account: Path = None  # an account key the asset does not accept

    def pub(self, key: Path) -> str:
        return Path(str(key) + ".pub").read_text().strip()


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    k = Keys(d)
    for name in ("alice", "bob", "intruder", "account", "rogue_account"):
        setattr(k, name, keygen(d / f"id_{name}", "ed25519", f"{name}@e2e"))
    return k


@pytest.fixture(scope="session")
def gatehouse() -> Path:
    binary = gatehouse_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"gateway binary {binary} not found; build it (swift build) or set GATEHOUSE_BIN", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def password_hashes(gatehouse) -> dict:
    """argon2id hashes of the test passwords, made once per session by `gatehouse hash-password`."""
    hashes = {}
    for user, pw in PASSWORDS.items():
        r = run([gatehouse, "hash-password", "--password", pw])
        assert r.rc == 0, f"hash-password failed:\n{r}"
        lines = [l.strip() for l in r.out.splitlines() if l.strip()]
        assert lines and lines[-1].startswith("$argon2id$"), f"hash-password printed no argon2id hash:\n{r}"
        hashes[user] = lines[-1]
    return hashes


# --------------------------------------------------------------------------------------------
# asset fixtures


@pytest.fixture(scope="session")
def asset_sshd(tmp_path_factory, keys):
    """The shared asset. Tests must not stop it or change its keys (use make_asset for that)."""
    a = AssetSSHD(tmp_path_factory.mktemp("asset"), Path(str(keys.account) + ".pub"))
    a.start()
    _SESSION_PROCS.append(a)
    yield a
    _SESSION_PROCS.remove(a)
    a.stop()


@pytest.fixture
def make_asset(tmp_path, keys):
    """Factory for a private asset sshd (function-scoped) that a test may stop or re-key."""
    started = []

    def make(name="private asset sshd"):
        a = AssetSSHD(tmp_path / f"asset{len(started)}", Path(str(keys.account) + ".pub"), name=name)
        started.append(a)
        _ITEM_PROCS.append(a)
        return a.start()

    yield make
    for a in started:
        a.stop()


@pytest.fixture(scope="session")
def asset_pty(asset_sshd, keys, tmp_path_factory):
    """Skips PTY tests when, as a normal user, the asset sshd cannot hand out terminals at all.

    A non-root sshd must chown the pty to the tty group; where /dev/pts is mounted without gid=5
    (some containers) that fails and sshd drops the session, with or without the gateway.
    As root nothing is skipped."""
    if IS_ROOT:
        return
    kh = tmp_path_factory.mktemp("pty-probe") / "known_hosts"
    r = run(asset_sshd.ssh_argv("true", key=keys.account, known_hosts=kh, options=["-tt"]))
    if r.rc != 0:
        pytest.skip("the asset sshd (not root) cannot allocate a PTY here, even without the gateway: "
                    + (r.err.strip().splitlines() or ["?"])[-1])


@pytest.fixture(scope="session")
def closed_port() -> int:
    """A port nothing listens on (the asset 'down01')."""
    return free_port()


# --------------------------------------------------------------------------------------------
# the gateway


class Gateway(LoggedProcess):
    def __init__(self, binary: Path, workdir: Path, config: dict, keys: Keys, name="gateway"):
        self.name = name
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keys = keys
        self.port = int(config["listen"]["ssh"].rsplit(":", 1)[1])
        web = config["listen"].get("web", "off")
        self.web_url = None if web == "off" else f"http://{web}"
        self.config = config
        self.config_path = self.dir / "gatehouse.yaml"
        self.config_path.write_text(to_yaml(config))
        self.log_path = self.dir / "gateway.stderr"
        self.stdout_path = self.dir / "gateway.stdout"
        self.known_hosts = self.dir / "client_known_hosts"

    def start(self, timeout: float = 30):
        err = open(self.log_path, "ab")
        out = open(self.stdout_path, "ab")
        start_at = self.log_size()
        self.proc = subprocess.Popen([str(self.binary), "serve", "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.dir,
                                     start_new_session=True)
        err.close()
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode} while starting:\n{self.log_text(start_at)}")
            log = self.log_text(start_at)
            if "listening on ssh" in log and (self.web_url is None or "listening on web" in log):
                return self
            banner = ssh_banner_at("127.0.0.1", self.port, 1.0)
            if banner and banner.startswith(b"SSH-") and (self.web_url is None or "listening on web" in self.log_text(start_at)):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"gateway not listening on {self.port} after {timeout} s:\n{self.log_text(start_at)}")

    def stop(self):
        self._terminate()

    # ---- clients

    def ssh_argv(self, login: str | None, *remote, auth: str = "key", key: Path | None = None,
                 password: str | None = None, options=(), dest_form: bool = False) -> list:
        """argv for the real OpenSSH client to this gateway.

        auth: "key" (BatchMode, public key; default alice's key), "password" (via sshpass when a
        password is given, else left to the caller, e.g. pexpect), "kbdint" (keyboard-interactive).
        dest_form: use `ssh LOGIN@127.0.0.1` instead of `ssh -l LOGIN 127.0.0.1`.
        """
        # ssh keeps the FIRST value given for an option, so the caller's options go first
        base = ["ssh", "-F", "/dev/null", *options, "-p", str(self.port),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=no", "-o", "ConnectTimeout=10",
                "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "UpdateHostKeys=no"]
        if auth == "key":
            base += ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key or self.keys.alice)]
        elif auth == "password":
            base += ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                     "-o", "NumberOfPasswordPrompts=1"]
        elif auth == "kbdint":
            base += ["-o", "PreferredAuthentications=keyboard-interactive", "-o", "PubkeyAuthentication=no",
                     "-o", "NumberOfPasswordPrompts=1"]
        else:
            raise ValueError(auth)
        if login is None:
            base += ["127.0.0.1"]
        elif dest_form:
            base += [f"{login}@127.0.0.1"]
        else:
            base += ["-l", login, "127.0.0.1"]
        base += list(remote)
        if password is not None and auth != "key":
            base = ["sshpass", "-p", password] + base
        return base

    def ssh(self, login, *remote, input=None, stdin=None, stdout=None, timeout=SUBPROCESS_TIMEOUT, **kw) -> Result:
        return run(self.ssh_argv(login, *remote, **kw), input=input, stdin=stdin, stdout=stdout, timeout=timeout)

    def spawn(self, login, *remote, dimensions=(24, 80), timeout=PEXPECT_TIMEOUT, term="dumb", **kw) -> "Terminal":
        return Terminal(self.ssh_argv(login, *remote, **kw), dimensions=dimensions, timeout=timeout, term=term)

    def assert_serving(self):
        """A good exec still works (the gateway survived whatever the test did)."""
        assert self.alive(), f"gateway died (rc={self.proc and self.proc.returncode})"
        r = self.ssh("alice@web01", "echo still-serving")
        assert r.rc == 0 and r.out == "still-serving\n", f"gateway no longer serves a good exec:\n{r}"


class Terminal:
    """pexpect child with a transcript, raising readable assertion errors."""

    def __init__(self, argv, dimensions=(24, 80), timeout=PEXPECT_TIMEOUT, term="dumb"):
        self.argv = [str(a) for a in argv]
        self.transcript = io.StringIO()
        self.child = pexpect.spawn(self.argv[0], self.argv[1:], env=client_env(TERM=term), dimensions=dimensions,
                                   timeout=timeout, encoding="utf-8", codec_errors="replace")
        self.child.logfile_read = self.transcript

    def expect(self, pattern, timeout=None, what=None):
        try:
            return self.child.expect(pattern, timeout=timeout if timeout is not None else -1)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            kind = "timeout" if isinstance(e, pexpect.TIMEOUT) else "EOF"
            raise AssertionError(f"{kind} waiting for {what or pattern!r}\n$ {shlex.join(self.argv)}\n"
                                 f"--- terminal transcript ---\n{self.transcript.getvalue()[-4000:]!r}") from None

    def send(self, text):
        self.child.send(text)

    def type(self, line):
        """Types a line and presses Enter (a real terminal sends CR)."""
        self.child.send(line + "\r")

    def wait_exit(self, timeout=PEXPECT_TIMEOUT) -> int:
        self.expect(pexpect.EOF, timeout=timeout, what="end of the session")
        self.child.close()
        return self.child.exitstatus if self.child.exitstatus is not None else 128 + (self.child.signalstatus or 0)

    def close(self):
        if self.child.isalive():
            self.child.close(force=True)

    def text(self) -> str:
        return self.transcript.getvalue()

    # shell helpers
    PROMPT = "GHPROMPT> "

    def start_shell(self):
        """Waits for any shell prompt, then sets a unique one (PS1 typed so the echo does not match it)."""
        self.expect(r"[#$%>] $", what="a shell prompt")
        self.type("PS1='GH''PROMPT> '")
        self.expect_prompt()

    def expect_prompt(self):
        self.expect(re.escape(self.PROMPT), what="the test shell prompt")

    def run_line(self, cmd, expect_regex, what=None):
        self.type(cmd)
        self.expect(expect_regex, what=what)
        self.expect_prompt()


def default_config(port: int, asset: AssetSSHD, keys: Keys, hashes: dict, down_port: int) -> dict:
    account = [{"name": OS_USER, "private_key_file": str(keys.account)}]

    def asset_entry(name, port=asset.port, accounts=account, **extra):
        return {"name": name, "host": "127.0.0.1", "ssh_port": port, **extra, "accounts": accounts}

    return {
        "data_dir": "var",
        "listen": {"ssh": f"127.0.0.1:{port}", "web": f"127.0.0.1:{free_port()}"},
        "users": [
            {"name": "alice", "password_hash": hashes["alice"], "authorized_keys": [keys.pub(keys.alice)], "role": "user"},
            {"name": "bob", "password_hash": hashes["bob"], "authorized_keys": [keys.pub(keys.bob)], "role": "user"},
            {"name": "audrey", "password_hash": hashes["audrey"], "role": "auditor"},
            {"name": "adam", "password_hash": hashes["adam"], "role": "admin"},
        ],
        "assets": [
            asset_entry("web01"),
            asset_entry("web02"),  # alice has no grant on it
            asset_entry("down01", port=down_port),
            asset_entry("refused01", accounts=[{"name": OS_USER, "private_key_file": str(keys.rogue_account)}]),
            asset_entry("pinned01", host_key=asset.fingerprint),
            asset_entry("badpin01", host_key=fake_fingerprint()),
        ],
        "grants": [
            {"users": ["alice"], "assets": ["web01", "down01", "refused01", "pinned01", "badpin01"], "accounts": [OS_USER]},
        ],
    }


@pytest.fixture(scope="session")
def _session_gateway(tmp_path_factory, gatehouse, asset_sshd, keys, password_hashes, closed_port):
    d = tmp_path_factory.mktemp("gateway")
    g = Gateway(gatehouse, d, default_config(free_port(), asset_sshd, keys, password_hashes, closed_port), keys,
                name="gateway (shared)")
    _SESSION_PROCS.append(g)
    g.start()
    yield g
    g.stop()
    _SESSION_PROCS.remove(g)


@pytest.fixture
def gateway(_session_gateway):
    """The shared gateway (default config). Restarted if a previous test killed it; a test during which
    it dies gets an error at teardown."""
    g = _session_gateway
    if not g.alive():
        g.start()
    yield g
    if not g.alive():
        rc = g.proc.returncode if g.proc else None
        g.proc = None
        pytest.fail(f"the gateway process exited during this test (rc={rc})", pytrace=False)


@pytest.fixture
def ssh_cmd(gateway):
    """ssh_cmd(login, *remote, auth=..., password=..., key=..., options=...) -> argv to the shared gateway."""
    return gateway.ssh_argv


@pytest.fixture
def make_gateway(tmp_path, gatehouse, asset_sshd, keys, password_hashes, closed_port):
    """Factory for a private gateway (function-scoped): make_gateway(extra_assets=[...], extra_grants=[...],
    users=..., assets=..., grants=..., security={...}). Overrides replace top-level keys."""
    started = []

    def make(extra_assets=(), extra_grants=(), **overrides):
        cfg = default_config(free_port(), asset_sshd, keys, password_hashes, closed_port)
        cfg["assets"] += list(extra_assets)
        cfg["grants"] += list(extra_grants)
        cfg.update(overrides)
        g = Gateway(gatehouse, tmp_path / f"gw{len(started)}", cfg, keys, name=f"private gateway {len(started)}")
        started.append(g)
        _ITEM_PROCS.append(g)
        return g.start()

    yield make
    died = [g for g in started if g.proc is not None and not g.alive()]
    for g in started:
        g.stop()
    if died:
        pytest.fail(f"a private gateway process exited during this test", pytrace=False)


@pytest.fixture
def direct(asset_sshd, keys, tmp_path):
    """direct(*remote, **run_kw) runs a command on the shared asset WITHOUT the gateway."""
    kh = tmp_path / "direct_known_hosts"

    def call(*remote, options=(), **kw):
        return run(asset_sshd.ssh_argv(*remote, key=keys.account, known_hosts=kh, options=options), **kw)

    return call


@pytest.fixture(scope="session")
def plain_shell_account(keys) -> str:
    """An asset login whose shell is /bin/sh with no rc files, for load tests: they should
    measure the gateway, not the machine's login shell start-up (an interactive bash that runs,
    say, `pyenv rehash` under a lock serialises 200 sessions by itself). As root a dedicated
    system user is made for it; otherwise the current user is used as it is."""
    if os.geteuid() != 0:
        return OS_USER
    name = "gh-e2e-sh"
    try:
        if subprocess.run(["id", name], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--create-home", "--home-dir", f"/var/lib/{name}",
                            "--shell", "/bin/sh", name], check=True, capture_output=True, timeout=30)
        # No password, but not "locked" either: sshd without PAM refuses locked accounts outright.
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True, timeout=30)
        ssh_dir = Path(f"/var/lib/{name}/.ssh")
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(keys.pub(keys.account) + "\n")
        shutil.chown(ssh_dir, name, name)
        shutil.chown(ssh_dir / "authorized_keys", name, name)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"plain_shell_account: cannot set up {name} ({e}); using {OS_USER}")
        return OS_USER
    return name


@pytest.fixture(scope="session")
def big_file(tmp_path_factory) -> Path:
    """100 MiB of random data, made once."""
    p = tmp_path_factory.mktemp("data") / "random.bin"
    with open(p, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    return p
