#!/usr/bin/env python3
"""What live watchers cost a busy session: one busy interactive SSH session through the gateway,
timed with 0 watchers, with N WebSocket watchers that read, and with N watchers of which some are
stalled (WebSocket handshake, then never read). See benchmarks/README.md ("Live watchers").

Reuses the process, sshd and gateway helpers of benchmarks/run (imported from that file).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.machinery
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def _load_harness():
    loader = importlib.machinery.SourceFileLoader("gatehouse_bench_run", str(BENCH_DIR / "run"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


H = _load_harness()
log, PROCS, med, fmt, pct = H.log, H.PROCS, H.med, H.fmt, H.pct

SECTION_TITLE = "## 6. Live watchers: what WebSocket watchers cost a busy session"
READY, DONE = b"GH-READY-", b"GH-DONE-"
# asciicast event lines as the gateway writes them: `[12.345678, "r", "80x24"]`
R_EVENT = re.compile(rb'(?m)^\[\d+\.\d+, "r", ')
M_EVENT = re.compile(rb'(?m)^\[\d+\.\d+, "m", ')

# Reads the ssh client's stdout (the terminal) in its own process, at C speed, so that the
# watchers in the benchmark's event loop can never slow the session's reader down. Prints
# "ready T", "done T BYTES" (T = CLOCK_MONOTONIC when the chunk holding the marker was read,
# BYTES = terminal bytes between the two marker lines) and "eof T TOTAL".
CONSUMER = r'''
import os, sys, time

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_md  # noqa: E402  (benchmarks/results_md.py)
READY, DONE = b"GH-READY-", b"GH-DONE-"
keep = max(len(READY), len(DONE)) - 1
pos, tail, ready_end, done = 0, b"", None, False
while True:
    chunk = os.read(0, 1 << 20)
    now = time.monotonic()
    if not chunk:
        break
    window = tail + chunk
    base = pos - len(tail)
    pos += len(chunk)
    tail = window[-keep:]
    if ready_end is None:
        i = window.find(READY)
        if i >= 0:
            ready_end = base + i + len(READY)
            print(f"ready {now:.6f}", flush=True)
            j = window.find(DONE, i)
            if j >= 0:
                done = True
                print(f"done {now:.6f} {base + j - ready_end}", flush=True)
    elif not done:
        j = window.find(DONE)
        if j >= 0 and base + j >= ready_end:
            done = True
            print(f"done {now:.6f} {base + j - ready_end}", flush=True)
print(f"eof {time.monotonic():.6f} {pos}", flush=True)
'''


def seq_bytes(n: int) -> int:
    """Bytes `seq 1 n` puts on a terminal (digits plus CR LF per line)."""
    total, d, lo = 0, 1, 1
    while lo <= n:
        hi = min(n, 10 ** d - 1)
        total += (hi - lo + 1) * (d + 2)
        d, lo = d + 1, 10 ** d
    return total


def proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of `pid`: {tid: (name with digits as #, seconds)}."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name = re.sub(r"\d+", "#", st[st.index("(") + 1:st.rindex(")")])
        fields = st[st.rindex(")") + 2:].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def thread_cpu_delta(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per thread name between two `thread_cpu` samples (threads that ended in between are lost)."""
    out: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        d = cpu - (before[tid][1] if tid in before else 0.0)
        if d > 0:
            out[name] = out.get(name, 0.0) + d
    return out


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return total - v[3] - v[4], total


def vm_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
                elif k == "Threads":
                    out[k] = int(v)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def reset_hwm(pid: int) -> bool:
    """Resets VmHWM (peak RSS) of `pid` to its current RSS (Linux ≥ 4.0, needs ptrace rights)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class LiveGateway(H.Gateway):
    """benchmarks/run's gateway process handling, with a config that has the web API and an auditor."""

    def __init__(self, binary: Path, workdir: Path, asset_port: int, alice_pub: str, audrey_pub: str,
                 account_key: Path, nofile: int):
        super().__init__(binary, workdir, asset_port, 0, 0, alice_pub, account_key, nofile)
        self.web_port = H.free_port()
        self.config.write_text(f"""data_dir: var
listen: {{ ssh: "127.0.0.1:{self.port}", web: "127.0.0.1:{self.web_port}" }}
users:
  - name: alice
    authorized_keys: [{json.dumps(alice_pub)}]
  - name: audrey
    role: auditor
    authorized_keys: [{json.dumps(audrey_pub)}]
assets:
  - name: web01
    host: 127.0.0.1
    ssh_port: {asset_port}
    accounts:
      - name: {json.dumps(H.OS_USER)}
        private_key_file: {json.dumps(str(account_key))}
grants:
  - users: [alice]
    assets: [web01]
""")

    def start(self, timeout: float = 30):
        start_at = H.file_size(self.log_path)
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while "listening on web" not in H.read_tail(self.log_path, start_at, 1000):
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"gateway web listener not up:\n{H.read_tail(self.log_path, start_at)}")
            time.sleep(0.05)
        return self

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


# --------------------------------------------------------------------------------------------
# watchers


class Watcher:
    def __init__(self, idx: int, stalled: bool):
        self.idx = idx
        self.stalled = stalled
        self.ready = False
        self.bytes = 0
        self.messages = 0
        self.events = 0
        self.r_events = 0
        self.m_events = 0
        self.lines = 0          # JSON-escaped newlines received: lines of output seen (plus screen rows)
        self.done_at = None     # when the session's end-of-output marker reached this watcher
        self.close = None       # (code, reason) of the WebSocket close
        self.error = None
        self.sock = None        # the stalled watchers' raw socket
        self.task = None

    @property
    def skips(self) -> int:
        return max(0, self.r_events - 1)


async def active_watcher(w: Watcher, url: str, token: str) -> None:
    from websockets.asyncio.client import connect  # noqa: PLC0415
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415
    header = True
    try:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None,
                           compression=None, open_timeout=30, ping_interval=None, close_timeout=5) as ws:
            while True:
                msg = await ws.recv(decode=False)
                now = time.monotonic()
                w.messages += 1
                w.bytes += len(msg)
                # asciicast lines: one per message (the "v2.asciicast" protocol) or several,
                # newline-separated (older gateways); the first line of the stream is the header
                n = msg.count(b"\n") + (1 if msg and not msg.endswith(b"\n") else 0)
                if header:
                    header = False
                    n -= 1
                w.events += n
                if b'"r"' in msg:
                    w.r_events += len(R_EVENT.findall(msg))
                    w.ready = True
                if b'"m"' in msg:
                    w.m_events += len(M_EVENT.findall(msg))
                w.lines += msg.count(b"\\n")
                if w.done_at is None and DONE in msg:
                    w.done_at = now
    except ConnectionClosed as e:
        rc = e.rcvd
        w.close = (rc.code, rc.reason) if rc else (None, "no close frame")
    except Exception as e:  # noqa: BLE001 - recorded per watcher
        w.error = f"{type(e).__name__}: {e}"


async def stalled_watcher(w: Watcher, port: int, path: str, token: str) -> None:
    """WebSocket handshake, then never another read (small receive buffer, as in the e2e test)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    w.sock = sock
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 30)
        await loop.sock_sendall(sock, (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n").encode())
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 30)  # byte by byte: nothing past the handshake
            if not chunk:
                raise RuntimeError(f"closed during the handshake: {got[:200]!r}")
            got += chunk
        if b" 101 " not in got.split(b"\r\n", 1)[0] + b" ":
            raise RuntimeError(f"no 101: {got[:200]!r}")
        w.bytes = len(got)
        w.ready = True
    except Exception as e:  # noqa: BLE001
        w.error = f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------
# the benchmark


class LiveBench:
    def __init__(self, a):
        self.a = a
        self.tmp = Path(tempfile.mkdtemp(prefix="gatehouse-bench-live-"))
        self.gw: LiveGateway | None = None
        self.results = {"rounds": [], "failures": [], "notes": [], "conditions": []}
        self.expected = seq_bytes(a.lines)

    # ---- setup

    def setup(self):
        a = self.a
        log(f"work dir {self.tmp}")
        keys = self.tmp / "keys"
        keys.mkdir()
        self.account_key = H.keygen(keys / "account", "bench-account")
        self.alice_key = H.keygen(keys / "alice", "bench-alice")
        audrey_key = H.keygen(keys / "audrey", "bench-audrey")
        pub = lambda k: Path(str(k) + ".pub").read_text().strip()  # noqa: E731
        self.asset = H.SSHD("asset sshd", self.tmp / "asset", pub(self.account_key), "INFO").start()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            want = soft
        self.gw = LiveGateway(a.gatehouse_bin, self.tmp / "gateway", self.asset.port, pub(self.alice_key),
                              pub(audrey_key), self.account_key, want).start()
        self.ssh_config = self.tmp / "ssh_config"
        common = ["  HostName 127.0.0.1", f"  User {H.OS_USER}", f"  IdentityFile {self.account_key}"]
        self.ssh_config.write_text("\n".join([
            "Host gh-asset", f"  Port {self.asset.port}", *common,
            "Host gh-gatehouse", "  HostName 127.0.0.1", f"  Port {self.gw.port}", "  User alice@web01",
            f"  IdentityFile {self.alice_key}",
            "Host *",
            "  BatchMode yes", "  IdentitiesOnly yes", "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null", "  GlobalKnownHostsFile /dev/null", "  UpdateHostKeys no",
            "  LogLevel ERROR", "  ControlMaster no", "  ControlPath none", "  ConnectTimeout 10",
            "  EscapeChar none", "  ServerAliveInterval 0", "  ForwardAgent no", "  ForwardX11 no",
        ]) + "\n")
        p = subprocess.run([str(a.gatehouse_bin), "token", "create", "--user", "audrey", "--config", str(self.gw.config)],
                           cwd=self.gw.dir, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines or not lines[-1].startswith("ght_"):
            raise RuntimeError(f"gatehouse token create failed rc={p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")
        self.token = lines[-1].strip()
        status, me = self.api("GET", "/api/v1/me")
        if status != 200:
            raise RuntimeError(f"the token does not work: {status} {me}")
        log(f"asset sshd :{self.asset.port}, gateway ssh :{self.gw.port} web :{self.gw.web_port} (pid {self.gw.proc.pid}); "
            f"watching as {me}")

    def api(self, method: str, path: str):
        req = urllib.request.Request(self.gw.web_url + path, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode(errors="replace")

    async def aapi(self, method: str, path: str):
        return await asyncio.to_thread(self.api, method, path)

    async def online(self) -> list:
        status, page = await self.aapi("GET", "/api/v1/sessions?state=online&user=alice")
        if status != 200:
            raise RuntimeError(f"GET sessions: {status} {page}")
        return page["sessions"]

    def failure(self, what: str, detail: str, since: int):
        digest = H.log_digest(self.gw.log_path, since) if self.gw else ""
        alive = self.gw.alive() if self.gw else False
        self.results["failures"].append({"what": what, "detail": detail, "gateway_alive": alive,
                                         "gateway_rc": None if alive else (self.gw.proc.returncode if self.gw and self.gw.proc else None),
                                         "stderr_tail": digest})
        log(f"FAILURE: {what}: {detail} (gateway {'alive' if alive else 'not running'})")
        if digest:
            log("gateway stderr:\n" + "\n".join("    " + l for l in digest.splitlines()[-15:]))

    async def gateway_idle(self, timeout: float = 20.0) -> float:
        """Waits until the gateway uses (almost) no CPU for 0.5 s: it compresses each finished recording
        in the background, which must not overlap the next measurement. Returns the seconds waited."""
        t0 = time.monotonic()
        pid = self.gw.proc.pid
        while time.monotonic() - t0 < timeout:
            c0 = proc_cpu(pid)
            await asyncio.sleep(0.5)
            c1 = proc_cpu(pid)
            if c0 is None or c1 is None or c1 - c0 <= 0.03:
                return time.monotonic() - t0
        log(f"the gateway was still busy after {timeout:.0f} s of waiting for it to go idle")
        return time.monotonic() - t0

    # ---- one measurement

    async def measure(self, cond: dict, rnd: int) -> dict:
        a = self.a
        via_gw = cond["path"] == "gatehouse"
        since = H.file_size(self.gw.log_path)
        res = {"cond": cond["key"], "round": rnd}
        res["idle_wait_s"] = await self.gateway_idle()
        if via_gw:
            deadline = time.monotonic() + 30
            while await self.online():
                if time.monotonic() > deadline:
                    raise RuntimeError("a previous session is still online after 30 s")
                await asyncio.sleep(0.2)
        host = "gh-gatehouse" if via_gw else "gh-asset"
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "DISPLAY")}
        env["TERM"] = "xterm"
        err_path = self.tmp / f"client.{cond['key']}.{rnd}.stderr"
        errf = open(err_path, "wb")
        ssh = PROCS.spawn(["ssh", "-F", self.ssh_config, "-tt", host], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=errf, env=env)
        cons = PROCS.spawn([sys.executable, "-c", CONSUMER], stdin=ssh.stdout, stdout=subprocess.PIPE, stderr=errf)
        ssh.stdout.close()
        errf.close()
        loop = asyncio.get_running_loop()
        lines_q: asyncio.Queue = asyncio.Queue()

        def pump():
            for line in cons.stdout:
                loop.call_soon_threadsafe(lines_q.put_nowait, line.decode().split())
            loop.call_soon_threadsafe(lines_q.put_nowait, None)

        threading.Thread(target=pump, daemon=True).start()

        async def expect(word: str, timeout: float):
            while True:
                try:
                    item = await asyncio.wait_for(lines_q.get(), timeout)
                except asyncio.TimeoutError:
                    raise RuntimeError(f"no {word!r} from the terminal within {timeout:.0f} s; ssh rc={ssh.poll()}; "
                                       f"stderr: {H.read_tail(err_path, 0, 5)!r}") from None
                if item is None:
                    raise RuntimeError(f"terminal closed before {word!r}; ssh rc={ssh.poll()}; stderr: {H.read_tail(err_path, 0, 5)!r}")
                if item[0] == word:
                    return item

        watchers: list[Watcher] = []
        reniced = False
        try:
            # -echo: the keystrokes below are not echoed; `read y` keeps the session (and its
            # watchers) open after the output, until the benchmark has looked at them
            ssh.stdin.write(f"stty -echo; printf 'GH%s\\n' -READY-; read x; seq 1 {a.lines}; "
                            f"printf 'GH%s\\n' -DONE-; read y; exit\n".encode())
            ssh.stdin.flush()
            await expect("ready", 30)
            sid = None
            if via_gw:
                sessions = await self.online()
                if len(sessions) != 1:
                    raise RuntimeError(f"expected one online session, got {len(sessions)}")
                sid = sessions[0]["id"]
                res["rss_idle_kib"] = vm_status(self.gw.proc.pid).get("VmRSS")
            n_stalled = cond["stalled"]
            if cond.get("nice"):
                # this thread only (Linux nice is per thread): the watchers' event loop; the ssh client,
                # the terminal reader and its pump thread were started before and keep their priority
                os.setpriority(os.PRIO_PROCESS, 0, cond["nice"])
                reniced = True
            if cond["watchers"]:
                path = f"/api/v1/sessions/{sid}/live"
                url = f"ws://127.0.0.1:{self.gw.web_port}{path}"
                t_att = time.monotonic()
                for i in range(cond["watchers"]):
                    w = Watcher(i, stalled=i < n_stalled)
                    w.task = asyncio.create_task(stalled_watcher(w, self.gw.web_port, path, self.token) if w.stalled
                                                 else active_watcher(w, url, self.token))
                    watchers.append(w)
                deadline = time.monotonic() + 60
                while not all(w.ready or w.error for w in watchers):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                res["attach_s"] = time.monotonic() - t_att
                bad = [w for w in watchers if not w.ready]
                if bad:
                    raise RuntimeError(f"{len(bad)} of {len(watchers)} watchers not attached: "
                                       f"{sorted(set(w.error or 'no first screen within 60 s' for w in bad))[:3]}")
                # the gateway lists every watcher before the output starts
                deadline = time.monotonic() + 20
                while True:
                    status, shown = await self.aapi("GET", f"/api/v1/sessions/{sid}")
                    if status == 200 and len(shown.get("watchers") or []) == len(watchers):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"gateway lists {len((shown or {}).get('watchers') or [])} watchers, not {len(watchers)}")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(a.settle)
            gpid = self.gw.proc.pid
            if via_gw:
                st = vm_status(gpid)
                res["rss_attached_kib"] = st.get("VmRSS")
                res["fds_attached"] = st.get("fds")
                res["hwm_reset"] = reset_hwm(gpid)
                gcpu0 = proc_cpu(gpid)
                threads0 = thread_cpu(gpid)
            mcpu0, own0 = machine_cpu(), time.process_time()
            t0 = time.monotonic()
            ssh.stdin.write(b"\n")
            ssh.stdin.flush()
            _, t_done, nbytes = await expect("done", a.timeout)
            t_done, nbytes = float(t_done), int(nbytes)
            mcpu1, own1 = machine_cpu(), time.process_time()
            res["seconds"] = t_done - t0
            res["bytes"] = nbytes - 2  # less the CR LF that ends the READY line
            res["mbs"] = res["bytes"] / 1e6 / res["seconds"]
            res["machine_busy"] = (mcpu1[0] - mcpu0[0]) / max(1, mcpu1[1] - mcpu0[1])
            res["bench_cpu_s"] = own1 - own0
            if via_gw:
                res["gw_cpu_s"] = (proc_cpu(gpid) or 0) - (gcpu0 or 0)
                res["gw_threads_cpu_s"] = thread_cpu_delta(threads0, thread_cpu(gpid))
                st = vm_status(gpid)
                res["rss_end_kib"] = st.get("VmRSS")
                res["hwm_kib"] = st.get("VmHWM") if res["hwm_reset"] else None
                if watchers:
                    status, shown = await self.aapi("GET", f"/api/v1/sessions/{sid}")
                    res["watchers_listed_at_end"] = len(shown.get("watchers") or []) if status == 200 else None
            if res["bytes"] != self.expected:
                res["byte_mismatch"] = f"{res['bytes']} bytes between the markers, expected {self.expected}"
            active = [w for w in watchers if not w.stalled]
            if active:
                # the session is idle now: give the reading watchers time to catch up
                deadline = time.monotonic() + 20
                while any(w.done_at is None and not w.task.done() for w in active) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                res["rss_caught_up_kib"] = vm_status(gpid).get("VmRSS")
            ssh.stdin.write(b"\n")  # ends the session
            ssh.stdin.flush()
            await expect("eof", 60)
            t_eof = time.monotonic()
            for _ in range(200):
                if ssh.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            res["ssh_rc"] = ssh.poll()
            if watchers:
                done, pending = await asyncio.wait([w.task for w in active], timeout=30)
                res["active_not_closed_30s"] = len(pending)
                res["active_closed_after_s"] = time.monotonic() - t_eof
                lag = [w.done_at - t_done for w in active if w.done_at is not None]
                res["watchers"] = [{"stalled": w.stalled, "bytes": w.bytes, "messages": w.messages, "events": w.events,
                                    "skips": w.skips, "lines": w.lines, "saw_end": w.done_at is not None,
                                    "ended_marker": w.m_events > 0, "close": w.close, "error": w.error}
                                   for w in watchers]
                res["lag_s"] = lag
        finally:
            if reniced:
                os.setpriority(os.PRIO_PROCESS, 0, 0)
            for w in watchers:
                if w.sock is not None:
                    w.sock.close()
                if w.task and not w.task.done():
                    w.task.cancel()
            if watchers:
                await asyncio.gather(*(w.task for w in watchers), return_exceptions=True)
            try:
                ssh.stdin.close()
            except OSError:
                pass
            for p in (ssh, cons):
                if p.poll() is None:
                    await asyncio.to_thread(PROCS.stop, p, 2.0)
                elif p in PROCS.started:
                    PROCS.started.remove(p)
        if via_gw:
            deadline = time.monotonic() + 30
            while await self.online() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await self.gateway_idle()
            st = vm_status(self.gw.proc.pid)
            res["rss_after_kib"] = st.get("VmRSS")
            res["fds_after"] = st.get("fds")
            text = H.read_tail(self.gw.log_path, since, 10 ** 7)
            res["log_cut_loose"] = text.count("live watcher cut loose")
            res["log_errors"] = sum(1 for l in text.splitlines() if re.search(r"\b(error|warning|critical)\b", l))
            if res["log_errors"]:
                res["log_digest"] = H.log_digest(self.gw.log_path, since)
        return res

    # ---- rounds

    async def go(self):
        a = self.a
        conds = []
        if not a.no_direct:
            conds.append({"key": "direct", "label": "direct (no gateway)", "path": "direct", "watchers": 0, "stalled": 0})
        conds.append({"key": "gh0", "label": "Gatehouse, 0 watchers", "path": "gatehouse", "watchers": 0, "stalled": 0})
        conds.append({"key": "active", "label": f"Gatehouse, {a.watchers} reading watchers", "path": "gatehouse",
                      "watchers": a.watchers, "stalled": 0})
        if a.niced:
            conds.append({"key": "niced", "label": f"Gatehouse, {a.watchers} reading watchers at nice {a.niced}",
                          "path": "gatehouse", "watchers": a.watchers, "stalled": 0, "nice": a.niced})
        if a.stalled:
            conds.append({"key": "stalled", "label": f"Gatehouse, {a.watchers} watchers ({a.watchers - a.stalled} reading, "
                                                     f"{a.stalled} stalled)",
                          "path": "gatehouse", "watchers": a.watchers, "stalled": a.stalled})
        self.results["conditions"] = conds
        self.results["rss_start_kib"] = vm_status(self.gw.proc.pid).get("VmRSS")
        # warm-up (not counted): page cache, the gateway's first session
        log("warm-up session (not counted)")
        try:
            await self.measure(conds[1 if not a.no_direct else 0], -1)
        except RuntimeError as e:
            self.failure("warm-up session", str(e), 0)
        for r in range(a.rounds):
            k = r % len(conds)
            for cond in conds[k:] + conds[:k]:
                since = H.file_size(self.gw.log_path)
                try:
                    res = await self.measure(cond, r)
                except RuntimeError as e:
                    self.failure(f"{cond['label']}, round {r + 1}", str(e), since)
                    if not self.gw.alive():
                        log("restarting the gateway")
                        self.gw.proc = None
                        self.gw.start()
                    continue
                self.results["rounds"].append(res)
                extra = ""
                if res.get("watchers"):
                    act = [w for w in res["watchers"] if not w["stalled"]]
                    extra = (f"; watchers: median {med([w['bytes'] for w in act]) / 1e6:.1f} MB, "
                             f"{med([w['skips'] for w in act]):.0f} skips, {sum(w['saw_end'] for w in act)}/{len(act)} saw the end"
                             f", lag p50 {fmt(med(res['lag_s']), 2)} s; listed at end {res.get('watchers_listed_at_end')}")
                if "rss_attached_kib" in res:
                    extra += (f"; gw RSS {res['rss_attached_kib'] / 1024:.1f} MiB attached, "
                              f"peak {fmt((res.get('hwm_kib') or 0) / 1024)} MiB, after {res['rss_after_kib'] / 1024:.1f} MiB"
                              f"; gw CPU {res['gw_cpu_s']:.2f} s")
                log(f"round {r + 1}/{a.rounds} {cond['label']:45} {res['seconds']:6.2f} s {res['mbs']:6.1f} MB/s "
                    f"machine busy {100 * res['machine_busy']:.0f} %{extra}"
                    + (f" ⚠ {res['byte_mismatch']}" if res.get("byte_mismatch") else "")
                    + (f" ⚠ {res['log_errors']} error/warning log lines" if res.get("log_errors") else ""))
        self.results["rss_end_kib"] = vm_status(self.gw.proc.pid).get("VmRSS")
        self.results["log_digest"] = H.log_digest(self.gw.log_path, 0, last=5)

    def cleanup(self):
        PROCS.stop_all()
        if self.a.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# report


def rng(xs, nd=1, scale=1.0):
    xs = [x * scale for x in xs if x is not None]
    return H.fmt_range(xs, nd) if xs else "–"


def render(res: dict, info: dict, a) -> str:
    conds = res["conditions"]
    by = {c["key"]: [r for r in res["rounds"] if r["cond"] == c["key"]] for c in conds}
    L = [SECTION_TITLE, ""]
    L.append(f"`benchmarks/live_watchers.py` ({'quick' if a.quick else 'full'} run {res['started']:%Y-%m-%d %H:%M %Z}; "
             f"commit {info['commit']}, release binary built {info['built']} (sha256 {info['sha']}…); "
             f"{info['nproc']} CPUs ({info['cpu']}), shared and noisy, load average at start {' '.join(info['load'])}). "
             f"One interactive shell session with a PTY (`ssh -tt`, real OpenSSH client) runs `seq 1 {a.lines}` "
             f"({res['expected'] / 1e6:.1f} MB of terminal text, {a.lines:,} lines); wall time from the keystroke that starts it "
             f"to the end-of-output marker arriving at the client's terminal reader (a separate process, so the watchers "
             f"cannot slow the reader). Watchers: WebSocket `/api/v1/sessions/{{id}}/live` clients (Python `websockets`, "
             f"all in the benchmark's one asyncio process on the same 2 CPUs) attached before the output starts; "
             f"\"stalled\" = handshake, 4 KiB receive buffer, never read"
             + (f"; \"at nice {a.niced}\" = the same reading watchers with the benchmark's event-loop thread at nice "
                f"{a.niced}, so they get CPU only when the session, the gateway and sshd leave some (a stand-in for "
                f"watchers on other machines; the gateway's own work for them is unchanged)" if a.niced else "")
             + f". {a.rounds} round{'s' if a.rounds != 1 else ''}, conditions interleaved, order rotated each round; median [min–max].")
    L.append("")
    base = [r["mbs"] for r in by.get("gh0", [])]
    L.append("| condition | n | seconds | MB/s | ÷ 0 watchers (medians) | ÷ 0 watchers (per round) | gateway CPU s | benchmark process CPU s | machine busy % |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    ratios = {}
    for c in conds:
        rows = by[c["key"]]
        if not rows:
            L.append(f"| {c['label']} | 0 | – | – | – | – | – | – | – |")
            continue
        mbs = [r["mbs"] for r in rows]
        per_round = []
        for r in rows if c["key"] != "direct" else []:
            b = next((x for x in by.get("gh0", []) if x["round"] == r["round"]), None)
            if b:
                per_round.append(r["mbs"] / b["mbs"])
        ratio_m = med(mbs) / med(base) if base and c["key"] != "direct" else None
        ratios[c["key"]] = (ratio_m, med(per_round) if per_round else None)
        L.append(f"| {c['label']} | {len(rows)} | {rng([r['seconds'] for r in rows], 2)} | {rng(mbs)} | "
                 f"{fmt(ratio_m, 2) + '×' if ratio_m else ('reference' if c['key'] == 'direct' else '–')} | "
                 f"{rng(per_round, 2) if per_round and c['key'] != 'gh0' else '–'} | "
                 f"{rng([r.get('gw_cpu_s') for r in rows], 2) if c['path'] == 'gatehouse' else '–'} | "
                 f"{rng([r['bench_cpu_s'] for r in rows], 2)} | {rng([r['machine_busy'] for r in rows], 0, 100)} |")
    L.append("")
    if by.get("direct") and base:
        L.append(f"Gatehouse without watchers runs this session at {med(base) / med([r['mbs'] for r in by['direct']]):.2f}× "
                 f"the throughput of a direct `ssh -tt` to the asset (the relay, recorder and command extractor).")
        L.append("")
    verdicts = []
    for key in ("active", "niced", "stalled"):
        if key in ratios and ratios[key][0]:
            rm, rp = ratios[key]
            verdicts.append(f"{next(c['label'] for c in conds if c['key'] == key)}: {rm:.2f}× of the 0-watcher throughput "
                            f"(per-round ratio median {fmt(rp, 2)}×) — {'meets' if rm >= 0.90 else 'misses'} the ≥ 0.90 target")
    if verdicts:
        L.append("**Ratio:** " + "; ".join(verdicts) + ".")
        L.append("")
    # where the gateway's CPU went
    lines_t = []
    for c in conds:
        rows = [r for r in by[c["key"]] if r.get("gw_threads_cpu_s") is not None]
        if c["path"] != "gatehouse" or not rows:
            continue
        names = sorted({n for r in rows for n in r["gw_threads_cpu_s"]})
        per = {n: med([r["gw_threads_cpu_s"].get(n, 0.0) for r in rows]) for n in names}
        top = [f"`{n}` {v:.2f}" for n, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.02][:6]
        lines_t.append(f"- {c['label']}: " + (", ".join(top) or "–"))
    if lines_t:
        L.append("Gateway CPU seconds during the output by thread name (median per session; digits shown as #):")
        L.append("")
        L += lines_t
        L.append("")
    # per watcher
    L.append("Per watcher (all rounds pooled; one row per kind of watcher): bytes = WebSocket payload received "
             "(asciicast JSON, header and first screen included), events = asciicast lines, skips = `\"r\"` events after "
             "the first (the watcher fell behind the 1 MiB window and got a fresh screen instead), lines = output lines "
             "seen (JSON `\\n`; screens add up to one per row), lag = when the end-of-output marker reached the watcher "
             "minus when it reached the session's client.")
    L.append("")
    L.append("| condition | watcher | n | MB received | events | messages | skips | lines seen (% of printed) | saw the end | lag s p50 [max] | close |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in conds:
        rows = by[c["key"]]
        ws_all = [w for r in rows for w in r.get("watchers", [])]
        if not ws_all:
            continue
        for kind, ws in (("reading", [w for w in ws_all if not w["stalled"]]), ("stalled", [w for w in ws_all if w["stalled"]])):
            if not ws:
                continue
            closes: dict[str, int] = {}
            for w in ws:
                k = w["error"] or (f"{w['close'][0]} {w['close'][1]}" if w["close"] else "closed by the benchmark")
                closes[k[:80]] = closes.get(k[:80], 0) + 1
            lag = [x for r in rows for x in r.get("lag_s", [])] if kind == "reading" else []
            lines = [100 * w["lines"] / a.lines for w in ws]
            L.append(f"| {c['label']} | {kind} | {len(ws)} | {rng([w['bytes'] / 1e6 for w in ws], 2)} | "
                     f"{rng([w['events'] for w in ws], 0)} | {rng([w['messages'] for w in ws], 0)} | "
                     f"{rng([w['skips'] for w in ws], 0)} | {rng(lines, 1) if kind == 'reading' else '–'} | "
                     f"{sum(w['saw_end'] for w in ws)}/{len(ws)} | "
                     f"{(fmt(med(lag), 2) + ' [' + fmt(max(lag), 2) + ']') if lag else '–'} | "
                     f"{'; '.join(f'{n}× {k}' for k, n in sorted(closes.items(), key=lambda kv: -kv[1]))} |")
    L.append("")
    # memory
    L.append("Gateway memory (VmRSS, MiB; peak = VmHWM after resetting it just before the output started):")
    L.append("")
    L.append("| condition | session idle, no watcher | watchers attached, before output | peak during output | end of output | after the session ended (gateway idle) | fds attached |")
    L.append("|---|---|---|---|---|---|---|")
    for c in conds:
        rows = by[c["key"]]
        if c["path"] != "gatehouse" or not rows:
            continue
        mib = 1 / 1024
        L.append(f"| {c['label']} | {rng([r.get('rss_idle_kib') for r in rows], 1, mib)} | "
                 f"{rng([r.get('rss_attached_kib') for r in rows], 1, mib)} | {rng([r.get('hwm_kib') for r in rows], 1, mib)} | "
                 f"{rng([r.get('rss_end_kib') for r in rows], 1, mib)} | {rng([r.get('rss_after_kib') for r in rows], 1, mib)} | "
                 f"{rng([r.get('fds_attached') for r in rows], 0)} |")
    L.append("")
    first = next((r for r in res["rounds"] if r.get("watchers")), None)
    if first:
        n = len(first["watchers"])
        L.append(f"First session with watchers on this (fresh) gateway: RSS {first['rss_attached_kib'] / 1024:.1f} MiB with "
                 f"{n} watchers attached, peak {fmt((first.get('hwm_kib') or 0) / 1024)} MiB during the output "
                 f"(≈ {((first.get('hwm_kib') or 0) - first['rss_attached_kib']) / n:.0f} KiB per watcher), "
                 f"{first['rss_after_kib'] / 1024:.1f} MiB after the session and its watchers were gone.")
        L.append("")
    gw_rows = [r for r in res["rounds"] if "rss_after_kib" in r]
    if gw_rows:
        L.append(f"RSS over the run: {res['rss_start_kib'] / 1024:.1f} MiB at the start (fresh gateway), "
                 f"after each session in run order: {', '.join(str(round(r['rss_after_kib'] / 1024)) for r in gw_rows)} MiB; "
                 f"{res['rss_end_kib'] / 1024:.1f} MiB at the end.")
        L.append("")
    # anomalies
    notes = []
    for r in res["rounds"]:
        tag = f"{next(c['label'] for c in conds if c['key'] == r['cond'])}, round {r['round'] + 1}"
        if r.get("byte_mismatch"):
            notes.append(f"{tag}: {r['byte_mismatch']}")
        if r.get("watchers_listed_at_end") is not None and r["cond"] != "gh0":
            n = next(c["watchers"] for c in conds if c["key"] == r["cond"])
            if r["watchers_listed_at_end"] != n:
                notes.append(f"{tag}: {r['watchers_listed_at_end']} of {n} watchers still listed at the end of the output")
        if r.get("log_cut_loose"):
            notes.append(f"{tag}: gateway cut {r['log_cut_loose']} watcher(s) loose")
        if r.get("active_not_closed_30s"):
            notes.append(f"{tag}: {r['active_not_closed_30s']} reading watchers not closed 30 s after the session ended")
        errs = [w for w in r.get("watchers", []) if w["error"]]
        if errs:
            notes.append(f"{tag}: {len(errs)} watcher errors, e.g. {errs[0]['error']}")
        if r.get("log_errors"):
            notes.append(f"{tag}: {r['log_errors']} error/warning lines in the gateway log")
    for f in res["failures"]:
        notes.append(f"**{f['what']}**: {f['detail']} (gateway {'running' if f['gateway_alive'] else 'exited'})")
    L.append("Anomalies: " + ("none (every session moved exactly the expected bytes, no error or warning in the gateway log, "
                               "no watcher error)." if not notes else ""))
    for n in notes:
        L.append(f"- {n}")
    digests = [r["log_digest"] for r in res["rounds"] if r.get("log_digest")] + [f["stderr_tail"] for f in res["failures"] if f.get("stderr_tail")]
    if digests:
        L.append("")
        L.append("  First gateway log digest with errors:")
        L.append("")
        L.append("  ```")
        L += ["  " + l[:300] for l in digests[0].splitlines()[:25]]
        L.append("  ```")
    L.append("")
    return "\n".join(L)


def write_section(path: Path, section: str) -> None:
    """Replaces this benchmark's section of RESULTS.md, or puts it before "Failures and anomalies"."""
    results_md.write_section(path, section, key=SECTION_TITLE.split(":")[0], before=r"## (Failures and anomalies|History)")


def main() -> int:
    ap = argparse.ArgumentParser(description="What live WebSocket watchers cost a busy Gatehouse session. "
                                             "See benchmarks/README.md.")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 20 watchers (5 stalled), 1,000,000 lines")
    ap.add_argument("--rounds", "-n", type=int, help="rounds (default 7)")
    ap.add_argument("--watchers", type=int, help="watchers per watched condition (default 100)")
    ap.add_argument("--stalled", type=int, help="of those, stalled ones in the third condition (default 20; 0 = skip it)")
    ap.add_argument("--lines", type=int, help="`seq 1 LINES` is the busy output (default 5,000,000: 43.9 MB with CR LF)")
    ap.add_argument("--niced", type=int, help="also run the reading watchers with their event loop at this nice value "
                                              "(default 19 as root, 0 = skip; needs root to return to 0 afterwards)")
    ap.add_argument("--no-direct", action="store_true", help="skip the direct (no gateway) reference")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between attaching the watchers and starting the output")
    ap.add_argument("--timeout", type=float, default=180, help="limit for one busy output (s)")
    ap.add_argument("--gatehouse-bin", type=Path, help="gateway binary (default: SCRATCH/release/gatehouse)")
    ap.add_argument("--scratch-path", type=Path, default=REPO / ".build-bench",
                    help="SwiftPM build dir for the release build (default .build-bench, so it never waits on .build)")
    ap.add_argument("--no-build", action="store_true", help="do not run `swift build -c release --product gatehouse` first")
    ap.add_argument("--commit", help="what to record as the measured commit, for a binary built elsewhere "
                                     "(default: `git rev-parse --short HEAD` of this repo, +uncommitted-changes if Sources/ is dirty)")
    ap.add_argument("--results", type=Path, help="write the Markdown section into this file (replaces the section if present)")
    ap.add_argument("--write-results", action="store_true", help="same as --results benchmarks/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also dump the raw per-round results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (gateway log, configs)")
    a = ap.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 7)
    a.watchers = a.watchers if a.watchers is not None else (20 if q else 100)
    a.stalled = a.stalled if a.stalled is not None else (5 if q else 20)
    a.stalled = min(a.stalled, a.watchers)
    a.lines = a.lines or (1_000_000 if q else 5_000_000)
    if a.niced is None:
        a.niced = 19 if os.geteuid() == 0 else 0
    elif a.niced and os.geteuid() != 0:
        ap.error("--niced needs root (the benchmark's thread has to return to nice 0 after each niced run)")
    a.gatehouse_bin = (a.gatehouse_bin or a.scratch_path / "release" / "gatehouse").resolve()
    results_path = a.results or (BENCH_DIR / "RESULTS.md" if a.write_results else None)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, H._on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if not a.no_build:
        log(f"swift build -c release --product gatehouse --scratch-path {a.scratch_path}")
        try:
            p = subprocess.run(["swift", "build", "-c", "release", "--product", "gatehouse", "--scratch-path", str(a.scratch_path)],
                               cwd=REPO, capture_output=True, text=True, timeout=3600)
        except subprocess.TimeoutExpired:
            log("swift build timed out")
            return 2
        if p.returncode != 0:
            log("swift build failed:\n" + (p.stdout + p.stderr)[-3000:])
            return 2
    if not os.access(a.gatehouse_bin, os.X_OK):
        log(f"no gateway binary at {a.gatehouse_bin}")
        return 2
    try:
        import websockets  # noqa: F401,PLC0415
    except ImportError:
        log("the python `websockets` package (>= 13) is required: pip install websockets")
        return 2

    info = H.machine_info(a)
    if a.commit:
        info["commit"], info["dirty"] = a.commit, False
    bench = LiveBench(a)
    bench.results["started"] = datetime.datetime.now().astimezone()
    bench.results["expected"] = bench.expected
    rc = 0
    try:
        bench.setup()
        asyncio.run(bench.go())
    except (KeyboardInterrupt, H.Interrupted) as e:
        log(f"interrupted ({e or 'Ctrl-C'}); cleaning up")
        rc = 130
    except Exception as e:  # noqa: BLE001
        log(f"aborted: {e}")
        traceback.print_exc()
        if bench.gw and bench.gw.log_path.exists():
            log("gateway stderr tail:\n" + H.read_tail(bench.gw.log_path))
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if a.json:
        a.json.write_text(json.dumps({k: (str(v) if k == "started" else v) for k, v in bench.results.items()}, indent=1))
    if bench.results["rounds"]:
        body = render(bench.results, info, a)
        print()
        print(body)
        if results_path and rc == 0:
            write_section(results_path, body)
            log(f"wrote the section to {results_path}")
    if rc == 0 and bench.results["failures"]:
        rc = 3
    return rc


if __name__ == "__main__":
    sys.exit(main())
