#!/usr/bin/env python3
"""SFTP and scp throughput: the real `sftp -b` (put/get), `scp` (SFTP mode) and `scp -O` (legacy)
clients moving one random file direct to the asset, through an OpenSSH ProxyJump host and through
Gatehouse (`alice@web01@gateway`), interleaved round by round. Every transfer's SHA-256 is checked,
and afterwards the gateway's audit trail must hold one record per transfer with the same SHA-256.
See benchmarks/README.md ("SFTP and scp throughput").

Reuses the process, sshd and gateway helpers of benchmarks/run (imported from that file).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_md  # noqa: E402  (benchmarks/results_md.py)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def _load_harness():
    loader = importlib.machinery.SourceFileLoader("gatehouse_bench_run", str(BENCH_DIR / "run"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


H = _load_harness()
log, PROCS, med, fmt = H.log, H.PROCS, H.med, H.fmt


def _load_console_scale():
    """benchmarks/console_scale.py, for its build step (HEAD from a `git archive` export when Sources/ has
    uncommitted changes) and the build stamp that says which commit a binary is."""
    loader = importlib.machinery.SourceFileLoader("gatehouse_bench_console_scale", str(BENCH_DIR / "console_scale.py"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


CS = _load_console_scale()

SECTION_TITLE = "## 9. SFTP and scp throughput"
PATHS = H.PATHS                                    # direct, proxyjump, gatehouse
LABEL = H.LABEL
TOOLS = ("sftp", "scp", "scp-O")
TOOL_LABEL = {"sftp": "`sftp -b` (put / get)", "scp": "`scp` (SFTP mode)", "scp-O": "`scp -O` (legacy scp)"}
TOOL_SHORT = {"sftp": "sftp", "scp": "scp", "scp-O": "scp -O"}
# what the gateway calls the session of each client: scp in SFTP mode is an `sftp` subsystem session
GW_PROTOCOL = {"sftp": "sftp", "scp": "sftp", "scp-O": "scp"}
DIRECTIONS = ("upload", "download")
MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# small /proc helpers


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
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def vm_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def parse_iso(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------------------------
# the gateway: benchmarks/run's process handling, a config with just the OpenSSH asset


class SftpGateway(H.Gateway):
    def __init__(self, binary: Path, workdir: Path, asset_port: int, alice_pub: str, account_key: Path, nofile: int):
        super().__init__(binary, workdir, asset_port, 0, 0, alice_pub, account_key, nofile)
        # the grant has no `actions:`, so it allows connect, upload and download
        self.config.write_text(f"""data_dir: var
listen: {{ ssh: "127.0.0.1:{self.port}" }}
users:
  - name: alice
    authorized_keys: [{json.dumps(alice_pub)}]
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

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args, "--config", str(self.config)], cwd=self.dir, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------
# the benchmark


class SftpBench:
    def __init__(self, a):
        self.a = a
        self.tmp = Path(tempfile.mkdtemp(prefix="gatehouse-bench-sftp-"))
        self.files = None
        self.gw: SftpGateway | None = None
        self.results = {"transfers": [], "failures": [], "notes": [], "profiles": [], "sanity": [], "profile_transfers": []}
        self.seq = 0

    # ---- setup

    def setup(self):
        a = self.a
        log(f"work dir {self.tmp}")
        base = Path(a.files_dir)
        need = a.size * 4
        try:
            st = os.statvfs(base)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = 0
        if free < need:
            self.results["notes"].append(f"{base} has {free / MIB:.0f} MiB free, {need / MIB:.0f} MiB needed: "
                                         f"files are in the temp dir {self.tmp} instead")
            base = self.tmp
        self.files = Path(tempfile.mkdtemp(prefix="gatehouse-bench-sftp-files-", dir=base))
        fs = H.sh(f"stat -f -c %T {shlex.quote(str(self.files))}")
        self.results["files_fs"] = f"{base} ({fs})"
        self.local = self.files / "local"
        self.remote = self.files / "remote"   # the asset runs on this machine: its files are right here
        self.local.mkdir()
        self.remote.mkdir()
        os.chmod(self.files, 0o755)
        self.src = self.local / "src.bin"
        log(f"writing {a.size / MIB:.0f} MiB of random bytes to {self.src}")
        with open(self.src, "wb") as f:
            left = a.size
            while left:
                n = min(left, 8 * MIB)
                f.write(os.urandom(n))
                left -= n
        self.src_sha = sha256_file(self.src)
        self.remote_src = self.remote / "src.bin"
        shutil.copyfile(self.src, self.remote_src)

        keys = self.tmp / "keys"
        keys.mkdir()
        self.account_key = H.keygen(keys / "account", "bench-account")
        self.alice_key = H.keygen(keys / "alice", "bench-alice")
        pub = lambda k: Path(str(k) + ".pub").read_text().strip()  # noqa: E731
        self.asset = H.SSHD("asset sshd", self.tmp / "asset", pub(self.account_key), "INFO").start()
        self.jump = H.SSHD("jump sshd", self.tmp / "jump", pub(self.account_key), "INFO").start()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            want = soft
        self.gw = SftpGateway(a.gatehouse_bin, self.tmp / "gateway", self.asset.port, pub(self.alice_key),
                              self.account_key, want).start()
        self.ssh_config = self.tmp / "ssh_config"
        common = ["  HostName 127.0.0.1", f"  User {H.OS_USER}", f"  IdentityFile {self.account_key}"]
        self.ssh_config.write_text("\n".join([
            "Host gh-asset", f"  Port {self.asset.port}", *common,
            "Host gh-jump", f"  Port {self.jump.port}", *common,
            "Host *",
            "  BatchMode yes", "  IdentitiesOnly yes", "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null", "  GlobalKnownHostsFile /dev/null", "  UpdateHostKeys no",
            "  LogLevel ERROR", "  ControlMaster no", "  ControlPath none", "  ConnectTimeout 10",
            "  ServerAliveInterval 0", "  ForwardAgent no", "  ForwardX11 no",
            # for ProxyJump the jump leg reads this file too, so both legs get the cipher
            *([f"  Ciphers {a.cipher}"] if a.cipher else []),
        ]) + "\n")
        log(f"asset sshd :{self.asset.port}, jump sshd :{self.jump.port}, gateway :{self.gw.port} (pid {self.gw.proc.pid})")
        self.results["rss_start_kib"] = vm_rss(self.gw.proc.pid)
        self.results["client_cipher"] = self.negotiated_cipher()

    def negotiated_cipher(self) -> str:
        argv = ["ssh", "-F", str(self.ssh_config), "-v", "-oLogLevel=DEBUG1", "gh-asset", "true"]
        rc, _, err, _ = H.run(argv, timeout=60)
        found = re.findall(r"kex: server->client cipher: (\S+)", err.decode(errors="replace"))
        return found[-1] if found else "unknown"

    # ---- one transfer

    def client_argv(self, tool: str, path: str, direction: str, remote: Path, local: Path) -> list[str]:
        argv = ["sftp" if tool == "sftp" else "scp", "-F", str(self.ssh_config)]
        if tool == "scp-O":
            argv.append("-O")
        if path == "direct":
            host = "gh-asset"
        elif path == "proxyjump":
            argv += ["-J", "gh-jump"]
            host = "gh-asset"
        else:
            argv += ["-P", str(self.gw.port), "-i", str(self.alice_key)]
            host = "alice@web01@127.0.0.1"
        if tool == "sftp":
            batch = self.tmp / "batch"
            q = lambda p: '"' + str(p) + '"'  # noqa: E731 - our paths have no quotes or backslashes
            batch.write_text((f"put {q(local)} {q(remote)}" if direction == "upload" else f"get {q(remote)} {q(local)}") + "\n")
            return argv + ["-b", str(batch), host]
        if direction == "upload":
            return argv + [str(local), f"{host}:{remote}"]
        return argv + [f"{host}:{remote}", str(local)]

    def gateway_idle(self, timeout: float = 30.0) -> float:
        """Waits until the gateway uses (almost) no CPU for 0.3 s (it compresses each finished recording in
        the background: that must not overlap the next measurement). Returns the seconds waited."""
        t0 = time.monotonic()
        pid = self.gw.proc.pid
        while time.monotonic() - t0 < timeout:
            c0 = proc_cpu(pid)
            time.sleep(0.3)
            c1 = proc_cpu(pid)
            if c0 is None or c1 is None or c1 - c0 <= 0.02:
                return time.monotonic() - t0
        log(f"the gateway was still busy after {timeout:.0f} s of waiting for it to go idle")
        return time.monotonic() - t0

    def transfer(self, tool: str, path: str, direction: str, rnd: int, size: int | None = None,
                 src: Path | None = None, src_sha: str | None = None, tag: str = "") -> dict:
        """One timed transfer, its checksum checked. Raises RuntimeError when it fails or stalls."""
        a = self.a
        size = size or a.size
        self.seq += 1
        name = f"{tag or 'x'}-{self.seq:03d}-{tool}-{direction[:2]}-{path}.bin"
        if direction == "upload":
            local, remote, dest = src or self.src, self.remote / name, self.remote / name
        else:
            remote = self.remote / name
            os.link(src or self.remote_src, remote)   # a name of its own, so the audit record is unambiguous
            local, dest = self.local / name, self.local / name
        argv = self.client_argv(tool, path, direction, remote, local)
        res = {"tool": tool, "path": path, "direction": direction, "round": rnd, "bytes": size, "sha256": src_sha or self.src_sha,
               "remote": str(remote), "local": str(local)}
        via_gw = path == "gatehouse"
        gwpid = self.gw.proc.pid
        c_before, t_before = proc_cpu(gwpid), thread_cpu(gwpid)
        res["idle_wait_s"] = self.gateway_idle() if a.idle_wait else 0.0
        res["idle_wait_gw_cpu_s"] = (proc_cpu(gwpid) or 0) - (c_before or 0)
        res["idle_wait_gw_threads"] = thread_cpu_delta(t_before, thread_cpu(gwpid))
        since = H.file_size(self.gw.log_path)
        err_path = self.tmp / "client.err"
        limit = a.timeout or 60 + size / 2e6
        cpu0, thr0, m0 = proc_cpu(gwpid), thread_cpu(gwpid) if via_gw else {}, machine_cpu()
        res["started"] = utc_now().isoformat()
        with open(err_path, "wb") as fe:
            t0 = time.perf_counter()
            p = PROCS.spawn(argv, stdout=subprocess.DEVNULL, stderr=fe)
        last_size, last_change, pauses, first_byte = 0, t0, [], None
        try:
            while True:
                try:
                    p.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.perf_counter()
                n = H.file_size(dest)
                if n != last_size:
                    if first_byte is None and n > 0:
                        first_byte = now - t0
                    if last_size and now - last_change >= 0.5:
                        pauses.append(now - last_change)
                    last_size, last_change = n, now
                if now - last_change > a.stall_timeout or now - t0 > limit:
                    ev = ""
                    if via_gw:
                        ev = f"; gateway CPU {proc_cpu(gwpid) - cpu0:.1f} s since the start"
                    raise RuntimeError(f"{TOOL_SHORT[tool]} {direction} via {LABEL[path]} stalled: no progress for "
                                       f"{now - last_change:.0f} s at {last_size:,} of {size:,} bytes, "
                                       f"{now - t0:.0f} s after the start{ev}")
        finally:
            if p.poll() is None:
                PROCS.stop(p, 1.0)
            elif p in PROCS.started:
                PROCS.started.remove(p)
            dt = time.perf_counter() - t0
            res["ended"] = utc_now().isoformat()
        m1 = machine_cpu()
        res["seconds"] = dt
        res["mbs"] = size / 1e6 / dt
        res["pauses"] = pauses
        res["first_byte_s"] = first_byte
        res["machine_cpu_s"] = (m1[0] - m0[0]) / os.sysconf("SC_CLK_TCK")
        res["machine_busy"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
        if via_gw:
            res["gw_cpu_s"] = (proc_cpu(gwpid) or 0) - (cpu0 or 0)
            res["gw_threads"] = thread_cpu_delta(thr0, thread_cpu(gwpid))
            res["gw_rss_kib"] = vm_rss(gwpid)
        err = err_path.read_bytes().decode(errors="replace").strip()
        try:
            if p.returncode != 0:
                raise RuntimeError(f"{TOOL_SHORT[tool]} {direction} via {LABEL[path]}: exit status {p.returncode}: {err[-400:]}")
            got = H.file_size(dest)
            digest = sha256_file(dest) if got == size else None
            res["sha_ok"] = digest == (src_sha or self.src_sha)
            if not res["sha_ok"]:
                raise RuntimeError(f"{TOOL_SHORT[tool]} {direction} via {LABEL[path]}: the copy differs "
                                   f"({got:,} of {size:,} bytes, sha256 {digest or '-'})")
        finally:
            for f in (dest, remote):
                try:
                    f.unlink()
                except OSError:
                    pass
        if err:
            res["client_stderr"] = err[-300:]
        if via_gw:
            text = H.read_tail(self.gw.log_path, since, 10 ** 6)
            bad = [l for l in text.splitlines() if re.search(r"\b(error|warning|critical)\b", l)]
            if bad:
                res["log_errors"] = len(bad)
                res["log_digest"] = H.log_digest(self.gw.log_path, since)
        return res

    def failure(self, what: str, detail: str, since: int):
        digest = H.log_digest(self.gw.log_path, since) if self.gw else ""
        alive = self.gw.alive() if self.gw else False
        self.results["failures"].append({"what": what, "detail": detail, "gateway_alive": alive, "stderr_tail": digest})
        log(f"FAILURE: {what}: {detail} (gateway {'alive' if alive else 'not running'})")
        if digest:
            log("gateway stderr:\n" + "\n".join("    " + l for l in digest.splitlines()[-15:]))
        if self.gw and not alive:
            log("restarting the gateway")
            self.gw.proc = None
            self.gw.start()

    # ---- rounds

    def go(self):
        a = self.a
        # sanity: every tool and path once with a small file (also warms up the binaries, caches, keys)
        small = self.local / "small.bin"
        small.write_bytes(os.urandom(MIB))
        small_remote = self.remote / "small.bin"
        shutil.copyfile(small, small_remote)
        small_sha = sha256_file(small)
        for tool in a.tools:
            for path in a.paths:
                for d in DIRECTIONS:
                    since = H.file_size(self.gw.log_path)
                    try:
                        r = self.transfer(tool, path, d, -1, size=MIB, src=small if d == "upload" else small_remote,
                                          src_sha=small_sha, tag="sanity")
                        self.results["sanity"].append(r)
                    except RuntimeError as e:
                        self.failure("sanity transfer", str(e), since)
                        raise RuntimeError(f"sanity check failed: {e}") from None
        log(f"sanity: {len(self.results['sanity'])} small transfers OK on every tool and path")
        for rnd in range(a.rounds):
            k = rnd % len(a.paths)
            order = list(a.paths[k:] + a.paths[:k])
            for tool in a.tools:
                for d in DIRECTIONS:
                    for path in order:
                        since = H.file_size(self.gw.log_path)
                        try:
                            r = self.transfer(tool, path, d, rnd, tag=f"r{rnd + 1}")
                        except RuntimeError as e:
                            self.failure(f"{TOOL_SHORT[tool]} {d} via {LABEL[path]}, round {rnd + 1}", str(e), since)
                            self.results["transfers"].append({"tool": tool, "path": path, "direction": d, "round": rnd,
                                                              "error": str(e)})
                            continue
                        self.results["transfers"].append(r)
                        extra = ""
                        if path == "gatehouse":
                            extra = f"; gw CPU {r['gw_cpu_s']:.2f} s, RSS {r['gw_rss_kib'] / 1024:.0f} MiB"
                        log(f"round {rnd + 1}/{a.rounds} {TOOL_SHORT[tool]:7} {d:8} {LABEL[path]:9} {r['mbs']:7.1f} MB/s "
                            f"({r['seconds']:.2f} s, machine CPU {r['machine_cpu_s']:.2f} s, waited {r['idle_wait_s']:.1f} s "
                            f"for the gateway){extra}"
                            + (f" ⚠ {r['log_errors']} error/warning log lines" if r.get("log_errors") else ""))
        if a.profile:
            self.profile()
        self.gateway_idle()
        self.results["rss_end_kib"] = vm_rss(self.gw.proc.pid)
        self.results["audit"] = self.check_audit()
        self.results["recordings"] = self.recordings()
        self.results["log_digest"] = H.log_digest(self.gw.log_path, 0, last=5)
        self.results["log_errors"] = sum(1 for l in H.read_tail(self.gw.log_path, 0, 10 ** 7).splitlines()
                                         if re.search(r"\b(error|warning|critical)\b", l))

    # ---- profile

    def profile(self):
        """One more (uncounted) Gatehouse transfer per tool and direction under `perf record -p GATEWAY`:
        where the gateway's CPU goes, by symbol (self time)."""
        perf = shutil.which("perf")
        if not perf:
            self.results["notes"].append("perf not installed: no CPU profile")
            return
        demangle = shutil.which("swift")
        for tool in self.a.tools:
            for d in DIRECTIONS:
                data = self.tmp / f"perf-{tool}-{d}.data"
                self.gateway_idle()
                errf = open(self.tmp / "perf.err", "ab")
                pr = PROCS.spawn([perf, "record", "-F", "499", "-p", str(self.gw.proc.pid), "-o", str(data)],
                                 stdout=errf, stderr=errf)
                time.sleep(0.5)
                since = H.file_size(self.gw.log_path)
                try:
                    r = self.transfer(tool, "gatehouse", d, -2, tag="profile")
                except RuntimeError as e:
                    self.failure(f"profiled {TOOL_SHORT[tool]} {d}", str(e), since)
                    r = None
                finally:
                    try:
                        os.kill(pr.pid, signal.SIGINT)
                        pr.wait(30)
                    except (OSError, subprocess.TimeoutExpired):
                        PROCS.stop(pr, 1.0)
                    if pr in PROCS.started:
                        PROCS.started.remove(pr)
                    errf.close()
                if r is None or not data.exists():
                    continue
                self.results["profile_transfers"].append(r)
                rc, out, err, _ = H.run([perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,sym",
                                         "--percent-limit", "1.5", "-g", "none"], timeout=300)
                text = out.decode(errors="replace")
                if demangle:
                    rc2, out2, _, _ = H.run([demangle, "demangle", "--simplified", "--compact"], input=text.encode(), timeout=120)
                    if rc2 == 0:
                        text = out2.decode(errors="replace")
                rows = []
                for line in text.splitlines():
                    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*)$", line)
                    if m:
                        rows.append((float(m.group(1)), m.group(2), m.group(4).strip(), m.group(3) == "k"))
                rc, out, err, _ = H.run([perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso",
                                         "-g", "none"], timeout=300)
                dsos = []
                for line in out.decode(errors="replace").splitlines():
                    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s*$", line)
                    if m:
                        dsos.append((float(m.group(1)), Path(m.group(2)).name))
                self.results["profiles"].append({"tool": tool, "direction": d, "mbs": r["mbs"], "gw_cpu_s": r["gw_cpu_s"],
                                                 "rows": rows[:30], "dsos": dsos[:8]})
                try:
                    data.unlink()
                except OSError:
                    pass
                log(f"profiled {TOOL_SHORT[tool]} {d}: {r['mbs']:.0f} MB/s; top: "
                    + "; ".join([f"{p:.0f}% {s[:60]}" for p, _, s, k in rows if not k][:4]))

    # ---- what the gateway recorded

    def check_audit(self) -> dict:
        """Every Gatehouse transfer must be a session with one transfer record: right direction, bytes, SHA-256."""
        p = self.gw.cli("sessions", "list", "--json", "--limit", "100000")
        if p.returncode != 0:
            return {"error": f"gatehouse sessions list failed rc={p.returncode}: {p.stderr[-300:]}"}
        sessions = json.loads(p.stdout)
        details = {}
        for s in sessions:
            if s["protocol"] in ("sftp", "scp"):
                q = self.gw.cli("sessions", "show", s["id"], "--json")
                if q.returncode == 0:
                    details[s["id"]] = json.loads(q.stdout)
        expected = [t for t in self.results["sanity"] + self.results["transfers"] + self.results["profile_transfers"]
                    if t["path"] == "gatehouse" and "error" not in t]
        out = {"sessions": len(sessions), "transfer_sessions": len(details), "expected": len(expected), "checked": []}
        used = set()
        for t in expected:
            t0, t1 = parse_iso(t["started"]), parse_iso(t["ended"])
            cands = [d for sid, d in details.items() if sid not in used
                     and t0 - datetime.timedelta(seconds=0.5) <= parse_iso(d["started"]) <= t1]
            row = {"tool": t["tool"], "direction": t["direction"], "round": t["round"], "remote": t["remote"], "local": t["local"],
                   "bytes": t["bytes"], "sha256": t["sha256"], "problems": []}
            if len(cands) != 1:
                row["problems"].append(f"{len(cands)} sessions started during the transfer (expected 1)")
            if cands:
                d = cands[0]
                used.add(d["id"])
                row["session"] = d["short_id"]
                row["protocol"] = d["protocol"]
                row["state"] = d["state"]
                row["recording"] = d.get("recording")
                row["bytes_in"], row["bytes_out"] = d.get("bytes_in"), d.get("bytes_out")
                if d["protocol"] != GW_PROTOCOL[t["tool"]]:
                    row["problems"].append(f"protocol {d['protocol']} (expected {GW_PROTOCOL[t['tool']]})")
                if d["state"] != "finished":
                    row["problems"].append(f"state {d['state']} ({d.get('reason')})")
                xs = d.get("transfers") or []
                row["records"] = xs
                if not xs:
                    row["problems"].append("no transfer record")
                    row["missing"] = True
                for x in xs:
                    if x["direction"] != t["direction"]:
                        row["problems"].append(f"recorded as {x['direction']}")
                    if x["bytes"] != t["bytes"]:
                        row["problems"].append(f"{x['bytes']:,} bytes recorded (moved {t['bytes']:,})")
                    want = t["sha256"]
                    if x.get("sha256") and x.get("sha256") != want:
                        row["problems"].append(f"sha256 {x.get('sha256')} recorded (file has {want[:16]}…)")
                    if not x.get("sha256"):
                        row["problems"].append("no sha256 recorded")
                    if x.get("outcome") != "ok":
                        row["problems"].append(f"outcome {x.get('outcome')}")
                    if x["path"] != t["remote"]:
                        row["path_recorded"] = x["path"]
                        row["problems"].append(f"path recorded as {x['path']} (the file is {t['remote']})")
                if len(xs) > 1:
                    row["problems"].append(f"{len(xs)} transfer records (expected 1)")
            else:
                row["missing"] = True
            out["checked"].append(row)
        out["missing"] = sum(1 for r in out["checked"] if r.get("missing"))
        out["with_problems"] = sum(1 for r in out["checked"] if r["problems"])
        out["sha_ok"] = sum(1 for r in out["checked"] if r.get("records") and all(x.get("sha256") == r["sha256"] for x in r["records"]))
        return out

    def recordings(self) -> dict:
        """Size on disk of the recordings of the measured Gatehouse sessions, by tool and direction."""
        out: dict[str, list] = {}
        rec_dir = self.gw.dir / "var" / "recordings"
        for r in (self.results.get("audit") or {}).get("checked", []):
            if r["round"] < 0 or not r.get("recording"):
                continue
            p = Path(r["recording"])
            if not p.is_absolute():
                p = rec_dir / p
            cands = [p, p.with_name(p.name + ".gz")] + list(rec_dir.rglob(p.name + "*"))
            size = next((c.stat().st_size for c in cands if c.exists()), None)
            if size is not None:
                out.setdefault(f"{r['tool']}|{r['direction']}", []).append(size)
        return out

    def cleanup(self):
        PROCS.stop_all()
        if self.a.keep:
            log(f"kept {self.tmp} and {self.files}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.files:
                shutil.rmtree(self.files, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# report


def rng(xs, nd=0):
    xs = [x for x in xs if x is not None]
    return H.fmt_range(xs, nd) if xs else "–"


def render(res: dict, info: dict, a) -> tuple[str, str]:
    ok = [t for t in res["transfers"] if "error" not in t]
    by = {}
    for t in ok:
        by.setdefault((t["tool"], t["direction"], t["path"]), []).append(t)
    errs = {}
    for t in res["transfers"]:
        if "error" in t:
            errs[(t["tool"], t["direction"], t["path"])] = errs.get((t["tool"], t["direction"], t["path"]), 0) + 1
    started = res["started"]
    L = [SECTION_TITLE, ""]
    L.append(f"`benchmarks/sftp_throughput.py` (run {started:%Y-%m-%d %H:%M %Z}; commit {info['commit']}, release binary built "
             f"{info['built']} (sha256 {info['sha']}…); {info['nproc']} CPUs ({info['cpu']}), shared and noisy, load average "
             f"at start {' '.join(info['load'])}; {info['ssh']}; gateway links libssh {info['libssh']}).")
    if info.get("note"):
        L.append(f"({info['note']})")
    L.append("")
    paths_txt = {"direct": "`sftp gh-asset` (the asset's sshd, `internal-sftp`)",
                 "proxyjump": "`-J jumphost` (a second OpenSSH sshd forwards the TCP stream)",
                 "gatehouse": "`alice@web01@127.0.0.1 -P <gateway port>` (the gateway ends the client's SSH connection, "
                              "parses the SFTP or scp stream in both directions, hashes each file with SHA-256, and opens "
                              "its own libssh connection to the asset)"}
    L.append(f"**Method:** one file of {a.size / MIB:.0f} MiB ({a.size / 1e6:.1f} MB) of random bytes, uploaded to and "
             f"downloaded from the same OpenSSH asset on 127.0.0.1 with the real clients: `sftp -b` with one `put` or `get`, "
             f"`scp` (OpenSSH 9's default SFTP mode) and `scp -O` (legacy scp/rcp protocol). Paths: direct; ProxyJump "
             f"{paths_txt['proxyjump']}; Gatehouse {paths_txt['gatehouse']}. Files on {res.get('files_fs', '?')} on both ends "
             f"(the asset is the same machine), so the disk does not set the pace; the gateway's own data directory "
             f"(database, recordings) is on the normal disk as in production. Client cipher: "
             f"{'`' + a.cipher + '`' if a.cipher else 'OpenSSH default'} (negotiated `{res.get('client_cipher', '?')}`); "
             f"the gateway→asset leg uses libssh's default (chacha20-poly1305, section 1). {a.rounds} round{'s' if a.rounds != 1 else ''}; in each "
             f"round every tool and direction runs on the three paths back to back, path order rotated each round; before "
             f"each transfer the benchmark waits until the gateway is idle (it compresses finished recordings in the "
             f"background). Time = wall time of the client process (connection setup included, ≈0.1–0.3 s); "
             f"MB/s = 10^6 bytes/s; median [min–max]. Every copy's SHA-256 was compared with the source's "
             f"({sum(1 for t in ok if t.get('sha_ok'))} of {len(res['transfers'])} measured transfers matched"
             f"{', plus ' + str(len(res['sanity'])) + ' 1 MiB sanity transfers' if res['sanity'] else ''}).")
    L.append("")
    L.append("| tool | direction | direct | ProxyJump | Gatehouse | GH/direct | GH/ProxyJump |")
    L.append("|---|---|---|---|---|---|---|")
    summary_parts = []
    medians = {}
    for tool in a.tools:
        for d in DIRECTIONS:
            m = {}
            cells = {}
            for p in PATHS:
                xs = [t["mbs"] for t in by.get((tool, d, p), [])]
                m[p] = med(xs) if xs else None
                n_err = errs.get((tool, d, p), 0)
                cells[p] = (rng(xs) if p in a.paths else "–") + (f" (**{n_err} failed**)" if n_err else "")
            medians[(tool, d)] = m
            L.append(f"| {TOOL_LABEL[tool]} | {d} | {cells['direct']} | {cells['proxyjump']} | {cells['gatehouse']} | "
                     f"{H.ratio(m['gatehouse'], m['direct'])} | {H.ratio(m['gatehouse'], m['proxyjump'])} |")
            summary_parts.append(f"{TOOL_SHORT[tool].replace(' ', '')}-{d[:2]} {fmt(m['gatehouse'], 0)}MB/s="
                                 f"{H.ratio(m['gatehouse'], m['direct'])}d/{H.ratio(m['gatehouse'], m['proxyjump'])}j")
    L.append("")
    # the slow ones: a Gatehouse row under half the median Gatehouse/direct ratio of the others
    rat = {k: v["gatehouse"] / v["direct"] for k, v in medians.items() if v.get("gatehouse") and v.get("direct")}
    if len(rat) >= 2:
        for k, r in sorted(rat.items(), key=lambda kv: kv[1]):
            others = [x for kk, x in rat.items() if kk != k]
            if r < 0.5 * med(others):
                g = by.get((k[0], k[1], "gatehouse"), [])
                gcpu = med([t["gw_cpu_s"] for t in g]) if g else None
                ocpu = [med([t["gw_cpu_s"] for t in by.get((kk[0], kk[1], "gatehouse"), [])]) for kk in rat if kk != k
                        and by.get((kk[0], kk[1], "gatehouse"))]
                pf = next((p for p in res["profiles"] if (p["tool"], p["direction"]) == k), None)
                top = ", ".join([f"`{short_name(s_)}` {p_:.0f} %" for p_, _, s_, kern in (pf or {}).get("rows", [])
                                 if not kern and not s_.startswith("0x")][:4])
                L.append(f"**Slow path:** {TOOL_SHORT[k[0]]} {k[1]} through Gatehouse runs at {r:.2f}× direct (the other "
                         f"transfers: {min(others):.2f}–{max(others):.2f}×); the gateway spends {fmt(gcpu, 1)} CPU s on it "
                         f"(the others {fmt(min(ocpu), 2)}–{fmt(max(ocpu), 2)} s)" + (f"; profile: {top}" if top else "") + ".")
                L.append("")

    # CPU
    L.append("CPU per transfer (median over the rounds; machine = all processes on both CPUs: clients, sshds, gateway, and "
             "whatever else the shared machine ran; gateway = the gateway process only):")
    L.append("")
    L.append("| tool | direction | machine CPU s: direct | ProxyJump | Gatehouse | gateway CPU s | gateway CPU by thread | "
             "machine busy % (Gatehouse) |")
    L.append("|---|---|---|---|---|---|---|---|")
    for tool in a.tools:
        for d in DIRECTIONS:
            g = by.get((tool, d, "gatehouse"), [])
            names: dict[str, list] = {}
            for t in g:
                for k, v in (t.get("gw_threads") or {}).items():
                    names.setdefault(k, []).append(v)
            top = sorted(((k, med(v + [0.0] * (len(g) - len(v)))) for k, v in names.items()), key=lambda kv: -kv[1])
            thr = ", ".join(f"`{k}` {v:.2f}" for k, v in top[:3] if v >= 0.01) or "–"
            L.append(f"| {TOOL_SHORT[tool]} | {d} | "
                     + " | ".join(fmt(med([t['machine_cpu_s'] for t in by.get((tool, d, p), [])]) if by.get((tool, d, p)) else None, 2)
                                  for p in PATHS)
                     + f" | {rng([t.get('gw_cpu_s') for t in g], 2)} | {thr} | "
                     f"{fmt(med([100 * t['machine_busy'] for t in g]) if g else None, 0)} |")
    L.append("")
    pz = {}
    for t in ok:
        pz.setdefault((t["tool"], t["direction"], t["path"]), []).extend(t.get("pauses", []))
    paused = [(k, v) for k, v in pz.items() if v]
    L.append("Pauses inside transfers (the destination file did not grow for ≥ 0.5 s once it had started; sampled every "
             "0.1 s): " + ("; ".join(f"{TOOL_SHORT[k[0]]} {k[1]} via {LABEL[k[2]]}: {len(v)} (longest {max(v):.1f} s)"
                                      for k, v in sorted(paused)) if paused else "none") + ".")
    fb = {}
    for t in ok:
        if t.get("first_byte_s") is not None:
            fb.setdefault(t["path"], []).append(t["first_byte_s"])
    if fb:
        L.append("Time from starting the client to the first byte of the destination file (connection, authentication, "
                 "the gateway's own connection to the asset, SFTP open; 0.1 s resolution), all tools: " + "; ".join(
                     f"{LABEL[p]} {rng(fb[p], 2)} s" for p in PATHS if p in fb) + ".")
    waits = [t["idle_wait_s"] for t in ok]
    if waits:
        after: dict[str, list] = {}
        for prev, t in zip(ok, ok[1:]):
            if t["idle_wait_s"] > 1.0:
                after.setdefault(f"{TOOL_SHORT[prev['tool']]} {prev['direction']} via {LABEL[prev['path']]}", []).append(t)
        parts = []
        for k, v in sorted(after.items()):
            names: dict[str, list] = {}
            for t in v:
                for n, c in (t.get("idle_wait_gw_threads") or {}).items():
                    names.setdefault(n, []).append(c)
            top = sorted(((n, med(c)) for n, c in names.items()), key=lambda kv: -kv[1])[:2]
            parts.append(f"{k}: {med([t['idle_wait_s'] for t in v]):.1f} s, gateway CPU {med([t['idle_wait_gw_cpu_s'] for t in v]):.1f} s "
                         f"({', '.join(f'`{n}` {c:.1f}' for n, c in top)}) (n={len(v)})")
        L.append(f"Waiting for the gateway to go idle before a transfer (its work for the previous session after that session "
                 f"ended): median {med(waits):.1f} s, max {max(waits):.1f} s"
                 + ("; over 1 s only after " + "; ".join(parts) if parts else "") + ".")
    rs, re_ = res.get("rss_start_kib"), res.get("rss_end_kib")
    if rs and re_:
        gw_rss = [t["gw_rss_kib"] for t in ok if t.get("gw_rss_kib")]
        L.append(f"Gateway RSS: {rs / 1024:.0f} MiB at the start, {max(gw_rss) / 1024 if gw_rss else 0:.0f} MiB at most "
                 f"after a transfer, {re_ / 1024:.0f} MiB at the end.")
    L.append("")

    # audit
    au = res.get("audit") or {}
    L.append("**Audit trail** (after the run: `gatehouse sessions list --json`, then `gatehouse sessions show ID --json` "
             "for each `sftp`/`scp` session; each Gatehouse transfer matched to the one session that started during it):")
    L.append("")
    if au.get("error"):
        L.append(f"- could not read it: {au['error']}")
        audit_summary = "audit unreadable"
    else:
        chk = au.get("checked", [])
        measured = [r for r in chk if r["round"] >= 0]
        L.append(f"- {len(chk)} Gatehouse transfers ({len(measured)} measured, {len(chk) - len(measured)} sanity/profile): "
                 f"**{len(chk) - au.get('missing', 0)} recorded, {au.get('missing', 0)} missing**; "
                 f"{au.get('sha_ok', 0)} with the right SHA-256; {au.get('with_problems', 0)} with any problem.")
        kinds: dict[str, list] = {}
        for r in chk:
            for pr in r["problems"]:
                if r.get("path_recorded") and pr.startswith("path recorded as"):
                    local_name = Path(r.get("local", "")).name
                    rel = r["path_recorded"][len(r["remote"]):] if r["path_recorded"].startswith(r["remote"]) else None
                    key = ("wrong path: recorded as `<target>/<name of the local file>`" if rel and rel.lstrip("/") in
                           ("src.bin", "small.bin", local_name) else "wrong path")
                else:
                    key = re.sub(r"/\S+", "PATH", pr)
                kinds.setdefault(f"{TOOL_SHORT[r['tool']]} {r['direction']}: {key}", []).append(r)
        for k, rows in sorted(kinds.items()):
            ex = rows[0]
            example = (f" (e.g. the file written was `{ex['remote']}`, the record says `{ex['path_recorded']}`)"
                       if ex.get("path_recorded") else "")
            L.append(f"- {len(rows)}× {k}{example}")
        protos = {}
        for r in chk:
            if r.get("protocol"):
                protos.setdefault(TOOL_SHORT[r["tool"]], set()).add(r["protocol"])
        L.append("- Session protocol as recorded: " + ", ".join(f"{k} → `{'/'.join(sorted(v))}`" for k, v in protos.items()) + ".")
        audit_summary = (f"audit {len(chk) - au.get('missing', 0)}/{len(chk)} recorded, sha256 ok {au.get('sha_ok', 0)}, "
                         f"problems {au.get('with_problems', 0)}")
    recs = res.get("recordings") or {}
    if recs:
        L.append("- Recordings on disk (the gateway's terminal recordings of the measured sessions, gzipped): " + "; ".join(
            f"{TOOL_SHORT[k.split('|')[0]]} {k.split('|')[1]}: {human(med(v))} each (n={len(v)}, {med(v) / a.size:.2f}× the file)" for k, v in sorted(recs.items())) + ".")
    big = [k for k, v in recs.items() if med(v) > 0.5 * a.size]
    if big:
        L.append("  " + ", ".join(f"{TOOL_SHORT[k.split('|')[0]]} {k.split('|')[1]}" for k in sorted(big))
                 + ": the file's bytes are in the recording. Legacy scp is an `exec` channel, which the gateway records and "
                   "feeds to the command extractor like any command's output (an `sftp` subsystem session gets neither); "
                   "uploads stay out because input is not recorded by default.")
    L.append(f"- Gateway log: {res.get('log_errors', 0)} error/warning lines over the whole run.")
    if res.get("log_errors"):
        L.append("")
        L.append("  ```")
        L += ["  " + l[:300] for l in (res.get("log_digest") or "").splitlines()[:20]]
        L.append("  ```")
    L.append("")

    if res["profiles"]:
        L.append("**Where the gateway's CPU goes** (`perf record -F 499 -p GATEWAY` over one extra, uncounted Gatehouse "
                 "transfer per tool and direction; samples by binary, then the top user-space symbols by self time, "
                 "≥ 1.5 % of the gateway's samples; the kernel's share is mostly socket I/O, `poll` and thread wake-ups):")
        L.append("")
        L.append("| transfer | MB/s | gateway CPU s | by binary | top user-space symbols (self %) |")
        L.append("|---|---|---|---|---|")
        for pf in res["profiles"]:
            dsos = ", ".join(f"{n.replace('[kernel.kallsyms]', 'kernel')} {p:.0f}%" for p, n in pf.get("dsos", [])[:5] if p >= 1)
            syms = "; ".join(f"{p:.0f}% {short_sym(s, dso)}" for p, dso, s, k in
                             [r for r in pf["rows"] if not r[3] and not r[2].startswith("0x")][:6])
            L.append(f"| {TOOL_SHORT[pf['tool']]} {pf['direction']} | {pf['mbs']:.0f} | {pf['gw_cpu_s']:.2f} | {dsos} | {syms} |")
        L.append("")

    if res["failures"]:
        L.append("**Failures:**")
        L.append("")
        for f in res["failures"]:
            L.append(f"- {f['what']}: {f['detail'][:400]} (gateway {'still running' if f['gateway_alive'] else 'not running'})")
        L.append("")
    for n in res["notes"]:
        L.append(f"Note: {n}")
        L.append("")

    summary = (f"{started:%Y-%m-%d %H:%M} sftp/scp (`benchmarks/sftp_throughput.py`, {a.rounds} round{'s' if a.rounds != 1 else ''}, {a.size / MIB:.0f} MiB) "
               f"commit {info['commit']}; " + ", ".join(summary_parts) + f"; {audit_summary}; gateway log errors/warnings "
               f"{res.get('log_errors', 0)}; failures {len(res['failures'])}")
    return "\n".join(L), summary


def short_name(sym: str) -> str:
    """`closure #1 in static AsciicastEncoder.appendEscaped(_:to:final:)` -> `AsciicastEncoder.appendEscaped`."""
    m = re.search(r"([A-Za-z_][\w]*\.[A-Za-z_][\w]*)\(", sym)
    return m.group(1) if m else sym[:50]


def human(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n:.0f} B"


def short_sym(sym: str, dso: str) -> str:
    sym = re.sub(r"\s+", " ", sym)
    if len(sym) > 70:
        sym = sym[:67] + "…"
    return f"`{sym}` ({Path(dso).name})"


def write_section(path: Path, section: str, history_line: str | None) -> None:
    """Replaces this benchmark's section of RESULTS.md, or inserts it before "## History"; appends the History line."""
    results_md.write_section(path, section, key=SECTION_TITLE.split(" throughput")[0], history_line=history_line)


def main() -> int:
    ap = argparse.ArgumentParser(description="SFTP and scp throughput: direct vs ProxyJump vs Gatehouse. See benchmarks/README.md.")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 32 MiB, no profile")
    ap.add_argument("--rounds", "-n", type=int, help="rounds (default 5)")
    ap.add_argument("--size", type=H.parse_size, help="bytes per transfer (default 200M = 200 MiB; quick 32M)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated: {','.join(TOOLS)} (default all)")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated: {','.join(PATHS)} (default all)")
    ap.add_argument("--cipher", help="client cipher on every leg the OpenSSH client controls (default: OpenSSH's default)")
    ap.add_argument("--files-dir", default="/dev/shm", help="where the transferred files live (default /dev/shm, tmpfs)")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                    help="profile (perf) one extra, uncounted Gatehouse transfer per tool and direction (default on, "
                         "off with --quick)")
    ap.add_argument("--no-idle-wait", dest="idle_wait", action="store_false",
                    help="do not wait for the gateway to go idle before each transfer")
    ap.add_argument("--stall-timeout", type=float, default=30.0, help="abort a transfer when its file does not grow for this long (s)")
    ap.add_argument("--timeout", type=float, help="limit for one transfer (default 60 s + 1 s per 2 MB)")
    ap.add_argument("--gatehouse-bin", type=Path, help="gateway binary (default: SCRATCH/release/gatehouse)")
    ap.add_argument("--scratch-path", type=Path, default=REPO / ".build-bench",
                    help="SwiftPM build dir for the release build (default .build-bench, so it never waits on .build)")
    ap.add_argument("--no-build", action="store_true", help="do not run `swift build -c release --product gatehouse` first")
    ap.add_argument("--worktree", action="store_true", help="build the working tree even when Sources/ has uncommitted "
                                                            "changes (default: build HEAD from a `git archive` export then)")
    ap.add_argument("--commit", help="what to record as the measured commit, for a binary built elsewhere")
    ap.add_argument("--results", type=Path, help="write the Markdown section into this file (replaces the section if present)")
    ap.add_argument("--write-results", action="store_true", help="same as --results benchmarks/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also dump the raw per-transfer results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (gateway log and database, configs)")
    a = ap.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 5)
    a.size = a.size or (32 * MIB if q else 200 * MIB)
    a.profile = a.profile if a.profile is not None else not q
    a.tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    a.paths = [p.strip() for p in a.paths.split(",") if p.strip()]
    bad = [t for t in a.tools if t not in TOOLS] + [p for p in a.paths if p not in PATHS]
    if bad:
        ap.error(f"unknown tool(s)/path(s) {bad}")
    a.paths = [p for p in PATHS if p in a.paths]
    a.gatehouse_bin = (a.gatehouse_bin or a.scratch_path / "release" / "gatehouse").resolve()
    results_path = a.results or (BENCH_DIR / "RESULTS.md" if a.write_results else None)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, H._on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if not a.no_build:
        a.build = True
        try:
            CS.build(a, "release build")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(f"{e}")
            return 2
    if not os.access(a.gatehouse_bin, os.X_OK):
        log(f"no gateway binary at {a.gatehouse_bin}")
        return 2
    for tool in ("ssh", "sftp", "scp", "ssh-keygen"):
        if not shutil.which(tool):
            log(f"{tool} is required")
            return 2

    info = CS.commit_info(a)     # the build stamp says which commit the binary is
    info["dirty"] = "+uncommitted" in info["commit"]
    bench = SftpBench(a)
    bench.results["started"] = datetime.datetime.now().astimezone()
    t_start = time.monotonic()
    rc = 0
    try:
        bench.setup()
        bench.go()
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
    log(f"run took {time.monotonic() - t_start:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({k: (str(v) if k == "started" else v) for k, v in bench.results.items()}, indent=1, default=str))
    if bench.results["transfers"]:
        body, summary = render(bench.results, info, a)
        print()
        print(body)
        print(summary)
        if results_path and rc == 0:
            write_section(results_path, body, f"- {summary}")
            log(f"wrote the section to {results_path}")
    if rc == 0 and bench.results["failures"]:
        rc = 3
    if rc == 0 and (bench.results.get("audit") or {}).get("missing"):
        rc = 3
    return rc


if __name__ == "__main__":
    sys.exit(main())
