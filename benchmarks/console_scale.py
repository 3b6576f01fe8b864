#!/usr/bin/env python3
"""Does the console stay usable with 10,000 sessions in the store? Target: the first page of
historical sessions in under 200 ms on this machine.

Starts a gateway (release build) with the web API on, fills its SQLite store with generated,
realistic finished sessions (commands and activities included), restarts it and times the
session-list API with every filter, sort key and a deep page, a session's detail calls, the
command search, and the console's "Historical sessions" page in headless Chromium. Queries over
the target are explained (EXPLAIN QUERY PLAN of the SQL the store runs) and candidate indexes are
tried on a copy of the database. See benchmarks/README.md ("Console at 10,000 sessions").

Reuses the process and gateway helpers of benchmarks/run (imported from that file).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import importlib.machinery
import importlib.util
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid
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
log, PROCS, med, fmt, pct = H.log, H.PROCS, H.med, H.fmt, H.pct

SECTION_TITLE = "## 7. Console at 10,000 sessions"
TARGET_MS = 200.0
# requests over a quarter of the target are explained too, and fixes tried for them: the first to cross it
WATCH_MS = TARGET_MS / 4
DAY = 86400.0
# SessionState.allCases without .online, in the enum's order: what `state=finished` asks the store for
ENDED_STATES = ["finished", "terminated", "interrupted", "failed"]
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.access(p, os.X_OK)), "/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

# --------------------------------------------------------------------------------------------
# the gateway


class ConsoleGateway(H.Gateway):
    """benchmarks/run's gateway process handling with a config for the console: an admin and a plain
    user with passwords, a few assets and grants, `listen.web` on a free loopback port."""

    def __init__(self, binary: Path, workdir: Path, account_key: Path, admin: str, admin_hash: str,
                 user: str, user_hash: str, nofile: int):
        super().__init__(binary, workdir, 0, 0, 0, "", account_key, nofile)
        self.web_port = H.free_port()
        acct = (f"    accounts:\n      - name: root\n        private_key_file: {json.dumps(str(account_key))}\n"
                f"      - name: deploy\n        private_key_file: {json.dumps(str(account_key))}\n")
        assets = "".join(f"  - name: {n}\n    host: 127.0.0.1\n    ssh_port: {H.free_port()}\n{acct}"
                         for n in ("web01", "web02", "db01", "app01"))
        self.config.write_text(f"""data_dir: var
listen: {{ ssh: "127.0.0.1:{self.port}", web: "127.0.0.1:{self.web_port}" }}
users:
  - name: {admin}
    password_hash: {json.dumps(admin_hash)}
    role: admin
  - name: {user}
    password_hash: {json.dumps(user_hash)}
    role: user
assets:
{assets}grants:
  - users: [{admin}]
    assets: [web01, web02, db01, app01]
  - users: [{user}]
    assets: [web01, app01]
    accounts: [deploy]
""")

    def start(self, timeout: float = 60):
        start_at = H.file_size(self.log_path)
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while "listening on web" not in H.read_tail(self.log_path, start_at, 1000):
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"gateway web listener not up:\n{H.read_tail(self.log_path, start_at)}")
            time.sleep(0.05)
        return self

    @property
    def db_path(self) -> Path:
        return self.dir / "var" / "gatehouse.sqlite"


# --------------------------------------------------------------------------------------------
# the generated store


FIRST_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "karl", "lena",
               "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "ursula", "victor", "wendy",
               "xavier", "yara", "zoe", "amir", "bea", "chen", "dmitri", "eli", "fatima", "gus", "hana", "igor", "jonas",
               "kim", "luis"]
CLIENTS = ["SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5", "SSH-2.0-OpenSSH_9.8",
           "SSH-2.0-PuTTY_Release_0.81", "SSH-2.0-OpenSSH_for_Windows_8.1", "SSH-2.0-WinSCP_release_6.3.5",
           "SSH-2.0-Go", "SSH-2.0-paramiko_3.4.0"]
SERVICES = ["nginx", "postgresql", "app", "redis-server", "docker", "kubelet", "sshd", "cron", "haproxy", "prometheus-node-exporter"]
PATHS = ["/var/log/syslog", "/var/log/nginx/error.log", "/var/log/nginx/access.log", "/srv/app/log/production.log",
         "/etc/nginx/nginx.conf", "/etc/hosts", "/etc/fstab", "/var/lib/postgresql/15/main/postgresql.auto.conf",
         "/home/deploy/.bashrc", "/opt/app/config.yml", "/etc/systemd/system/app.service"]


def command_line(rng: random.Random, asset: str) -> tuple[str, str, str, str | None]:
    """(command, output, risk, rule): a plausible command, the first lines it printed, and its risk."""
    r = rng.random()
    svc, path = rng.choice(SERVICES), rng.choice(PATHS)
    if r < 0.004:
        return "rm -rf / --no-preserve-root", "", "denied", "#1 rm\\s+-rf\\s+/"
    if r < 0.010:
        return f"rm -rf /var/tmp/build-{rng.randrange(1000, 9999)}", "", "high", "#3 rm\\s+-rf"
    if r < 0.025:
        return rng.choice(["sudo -i", "sudo su -", "su - postgres"]), "", "high", "#2 ^(sudo -i|sudo su|su -)"
    if r < 0.027:
        db = rng.choice(["orders", "billing", "users", "inventory"])
        return (f"pg_dump -Fc {db} > /var/backups/{db}-{rng.randrange(1, 28):02d}.dump", "", "normal", None)
    templates = [
        (0.12, lambda: (f"sudo systemctl {rng.choice(['status', 'restart', 'reload', 'status'])} {svc}",
                        f"● {svc}.service - {svc}\n     Loaded: loaded (/lib/systemd/system/{svc}.service; enabled)\n"
                        f"     Active: active (running) since Tue 2026-11-{rng.randrange(1, 25):02d} 0{rng.randrange(0, 9)}:12:44 UTC")),
        (0.10, lambda: ("ls -la" + rng.choice(["", " /var/www", " /srv/app", " /tmp", " ~/deploy"]),
                        f"total {rng.randrange(8, 400)}\ndrwxr-xr-x  5 root root 4096 Nov 12 09:14 .\ndrwxr-xr-x 19 root root 4096 Oct  2 11:02 ..")),
        (0.08, lambda: (f"cd {rng.choice(['/srv/app', '/var/www/html', '/etc/nginx', '/opt/app', '~'])}", "")),
        (0.07, lambda: (f"tail -n {rng.choice([50, 100, 200, 500])} {path}",
                        f"Nov 24 1{rng.randrange(0, 9)}:0{rng.randrange(0, 9)}:11 {asset} {svc}[{rng.randrange(300, 40000)}]: request completed in {rng.randrange(2, 900)} ms")),
        (0.06, lambda: (f"journalctl -u {svc} --since '{rng.choice(['1 hour ago', 'today', '10 min ago'])}'",
                        f"-- Logs begin at Mon 2026-11-02 00:00:01 UTC. --\nNov 24 10:01:02 {asset} systemd[1]: Started {svc}.")),
        (0.06, lambda: ("df -h", "Filesystem      Size  Used Avail Use% Mounted on\n/dev/sda1        50G   "
                                 f"{rng.randrange(5, 49)}G   {rng.randrange(1, 40)}G  {rng.randrange(10, 99)}% /")),
        (0.05, lambda: (rng.choice(["uptime", "free -m", "whoami", "hostname", "date", "id"]),
                        f" 10:{rng.randrange(10, 59)}:03 up {rng.randrange(1, 300)} days,  load average: 0.{rng.randrange(0, 99):02d}, 0.31, 0.22")),
        (0.05, lambda: (f"ps aux | grep {rng.choice(['java', 'python', 'node', 'postgres', 'nginx'])}",
                        f"app      {rng.randrange(300, 60000)}  2.1  4.3 1823400 352012 ?  Sl   Nov20  41:02 /usr/bin/java -jar app.jar")),
        (0.05, lambda: (f"sudo vim {path}", "")),
        (0.04, lambda: (f"cat {path}", "# managed by ansible\nuser www-data;\nworker_processes auto;")),
        (0.04, lambda: ("git pull" if rng.random() < 0.6 else f"git log --oneline -n {rng.randrange(3, 20)}",
                        f"Updating {rng.getrandbits(32):08x}..{rng.getrandbits(32):08x}\nFast-forward\n app/models/order.rb | {rng.randrange(1, 40)} ++--")),
        (0.04, lambda: (f"docker {rng.choice(['ps', 'ps -a', 'images', 'logs --tail 100 app', 'compose up -d'])}",
                        "CONTAINER ID   IMAGE          COMMAND                  STATUS\n3f2a9c1d0e4b   app:1.42.0     \"/entrypoint.sh\"         Up 3 days")),
        (0.04, lambda: (f"kubectl get pods -n {rng.choice(['prod', 'staging', 'monitoring', 'kube-system'])}",
                        f"NAME                   READY   STATUS    RESTARTS   AGE\napi-7d9f8c6b5-x2kqz    1/1     Running   {rng.randrange(0, 4)}          {rng.randrange(1, 30)}d")),
        (0.04, lambda: (f"psql -U app -c 'select count(*) from {rng.choice(['orders', 'users', 'payments', 'sessions'])}'",
                        f" count\n-------\n {rng.randrange(1000, 9000000)}\n(1 row)")),
        (0.03, lambda: (f"sudo apt-get {rng.choice(['update', 'upgrade -y', 'install -y htop', 'install -y jq'])}",
                        "Hit:1 http://deb.debian.org/debian bookworm InRelease\nReading package lists... Done")),
        (0.03, lambda: (f"grep -r '{rng.choice(['ERROR', 'timeout', 'OutOfMemory', 'refused'])}' /var/log/{rng.choice(['app', 'nginx', 'postgresql'])}",
                        f"/var/log/app/app.log:2026-11-24 10:0{rng.randrange(0, 9)}:00 ERROR upstream timed out")),
        (0.03, lambda: (rng.choice(["top", "htop", "iotop -o"]), "")),
        (0.03, lambda: (f"curl -s localhost:{rng.choice([8080, 9090, 3000, 9100])}/health", '{"status":"ok"}')),
        (0.03, lambda: (f"sudo chown -R www-data:www-data /var/www/{rng.choice(['html', 'shop', 'static'])}", "")),
        (0.03, lambda: (f"scp backup-{rng.randrange(1, 28):02d}.tar.gz deploy@{rng.choice(['db01', 'nas01'])}:/srv/backups/", "")),
        (0.02, lambda: (f"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub", f"256 SHA256:{rng.getrandbits(200):050x}"[:50] + f" root@{asset} (ED25519)")),
        (0.02, lambda: ("exit", "")),
    ]
    x = rng.random() * sum(w for w, _ in templates)
    for w, make in templates:
        x -= w
        if x <= 0:
            cmd, out = make()
            return cmd, out, "normal", None
    cmd, out = templates[0][1]()
    return cmd, out, "normal", None


def weighted(rng: random.Random, items: list, weights: list):
    return rng.choices(items, weights)[0]


def fill_store(db_path: Path, n: int, seed: int, admin: str, plain_user: str) -> dict:
    """Inserts `n` ended sessions over the last 90 days with their commands and activities, in one
    transaction. Returns what was generated (counts, and ids and values the queries use)."""
    rng = random.Random(seed)
    now = time.time()
    users = FIRST_NAMES[:36] + [plain_user, admin]
    # a few heavy users, a long tail (Zipf-like); the plain user is a typical one
    uw = [1.0 / (i + 1) ** 0.8 for i in range(len(users))]
    uw[users.index(plain_user)] = uw[8]
    uw[users.index(admin)] = uw[30]
    addrs = {u: [f"10.{rng.randrange(1, 40)}.{rng.randrange(0, 255)}.{rng.randrange(2, 254)}" for _ in range(rng.randrange(1, 4))] for u in users}
    clients = {u: rng.sample(CLIENTS, 2) for u in users}
    kinds = [("web", 40, ["deploy", "root", "www-data"]), ("app", 30, ["deploy", "app"]), ("db", 12, ["postgres", "root"]),
             ("cache", 8, ["root"]), ("k8s-node", 24, ["ubuntu", "root"]), ("ci-runner", 10, ["gitlab-runner", "root"]),
             ("bastion-test", 2, ["root"]), ("win-jump", 4, ["Administrator"])]
    assets, aw, accounts = [], [], {}
    for kind, count, accts in kinds:
        for i in range(1, count + 1):
            name = f"{kind}{i:02d}"
            assets.append(name)
            aw.append(1.0 / i ** 0.6)
            accounts[name] = accts
    for name in ("web01", "app01"):
        accounts[name] = ["deploy"] + [a for a in accounts[name] if a != "deploy"]

    def start_time() -> float:
        # working hours on weekdays mostly, some nights and weekends
        while True:
            t = now - rng.random() * 90 * DAY
            d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
            w = (0.25 if d.weekday() >= 5 else 1.0) * (1.0 if 7 <= d.hour < 19 else 0.15)
            if rng.random() < w:
                return t

    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 10000")
    have = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for t in ("session", "activity", "command"):
        if t not in have:
            raise RuntimeError(f"the gateway did not create table {t!r} in {db_path} (has: {sorted(have)})")
    before = con.execute("SELECT COUNT(*) FROM session").fetchone()[0]
    stats = {"sessions": 0, "commands": 0, "activities": 0, "by_state": {}, "by_protocol": {}, "existing_before": before}
    detail_ids, terms = [], {}
    sess_rows, cmd_rows, act_rows = [], [], []
    for _ in range(n):
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        user = weighted(rng, users, uw)
        asset = weighted(rng, assets, aw)
        account = rng.choice(accounts[asset]) if user != plain_user else accounts[asset][0]
        started = start_time()
        p = rng.random()
        if asset.startswith("win-"):
            proto, program = "rdp", "desktop"
        elif p < 0.065:
            proto, program = "sftp", "subsystem: sftp"
        else:
            proto = "ssh"
            program = "shell" if rng.random() < 0.85 else "exec: " + rng.choice(
                ["uptime", "df -h", "systemctl is-active app", "cat /etc/os-release", "/usr/local/bin/backup.sh", "git -C /srv/app pull"])
        s = rng.random()
        state = "failed" if s < 0.08 else "terminated" if s < 0.11 else "interrupted" if s < 0.13 else "finished"
        if state == "failed":
            duration = rng.uniform(0.05, 6.0)
        elif program.startswith("exec"):
            duration = rng.uniform(0.3, 90.0)
        else:
            duration = min(10 * 3600, max(3.0, rng.lognormvariate(math.log(360), 1.3)))
        ended = started + duration
        addr = rng.choice(addrs[user])
        client = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3" if proto == "rdp" else rng.choice(clients[user])
        terminated_by, reason = None, None
        if state == "failed":
            reason = rng.choice([f"cannot reach {asset}: connection refused", f"cannot reach {asset}: timed out after 10 s",
                                 f"{asset}: authentication as {account} failed", f"no grant for {user} on {asset}",
                                 f"host key of {asset} changed"])
        elif state == "terminated":
            terminated_by = admin
            reason = "terminated by an administrator"
        elif state == "interrupted":
            reason = "the gateway stopped while the session was online"
        else:
            reason = rng.choice(["client disconnected", "client disconnected", "the asset closed the channel", "exit status 0"])
        recording = None
        if state != "failed" and proto == "ssh":
            day = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%d")
            recording = f"{day}/{sid}.cast.gz"
        bin_ = int(rng.lognormvariate(math.log(4000), 1.5)) if state != "failed" else 0
        bout = int(rng.lognormvariate(math.log(90000), 2.0)) if state != "failed" else 0
        sess_rows.append((sid, user, asset, account, proto, addr, client, program, started, ended, state, terminated_by,
                          reason, recording, bin_, bout))
        # activities: as the gateway writes them
        acts = [(sid, started - 0.2, "connected", f"from {addr} with {client}"),
                (sid, started - 0.2, "authenticated", f"{user} by {rng.choice(['publickey', 'publickey', 'password'])}")]
        if state == "failed":
            acts.append((sid, started, "upstream_failed", reason))
        else:
            acts.append((sid, started, "upstream_connected", f"{account}@{asset} (SHA256:{rng.getrandbits(172):043x})"))
            if rng.random() < 0.03:
                acts.append((sid, started + duration * 0.5, "watched", f"{admin} from 10.0.0.5"))
            if state == "terminated":
                acts.append((sid, ended, "terminated", f"{reason} (by {admin})"))
            else:
                acts.append((sid, ended, "disconnected", reason))
        act_rows += acts
        # commands: shell sessions 1-20, exec sessions their one command; none for sftp/rdp and
        # failed sessions (nothing ran there)
        ncmd = 0
        if state != "failed" and proto == "ssh":
            ncmd = 1 if program.startswith("exec") else rng.randint(1, 20)
        offs = sorted(rng.uniform(0.5, max(1.0, duration - 0.5)) for _ in range(ncmd))
        for off in offs:
            if program.startswith("exec"):
                cmd, out, risk, rule = program[6:], "", "normal", None
            else:
                cmd, out, risk, rule = command_line(rng, asset)
            cmd_rows.append((sid, started + off, off, cmd, out, risk, rule))
            for term in ("systemctl", "pg_dump"):
                if term in cmd:
                    terms.setdefault(term, set()).add(sid)
        if ncmd >= 12 and len(detail_ids) < 40:
            detail_ids.append(sid)
        stats["by_state"][state] = stats["by_state"].get(state, 0) + 1
        stats["by_protocol"][proto] = stats["by_protocol"].get(proto, 0) + 1
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO session (id, user, asset, account, protocol, remote_address, client_software, program, "
                    "started_at, ended_at, state, terminated_by, reason, recording, bytes_in, bytes_out) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", sess_rows)
    con.executemany("INSERT INTO activity (session_id, time, kind, detail) VALUES (?, ?, ?, ?)", act_rows)
    con.executemany("INSERT INTO command (session_id, time, offset, command, output, risk, rule) VALUES (?, ?, ?, ?, ?, ?, ?)", cmd_rows)
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    insert_s = time.perf_counter() - t0
    # what the queries filter on: the plain user, a typical (median-sized) user and asset
    per_user = dict(con.execute("SELECT user, COUNT(*) FROM session GROUP BY user").fetchall())
    per_asset = dict(con.execute("SELECT asset, COUNT(*) FROM session GROUP BY asset").fetchall())
    con.close()
    by_count = sorted((c, u) for u, c in per_user.items() if u not in (admin, plain_user))
    typical_user = by_count[len(by_count) // 2][1]
    typical_asset = sorted((c, a) for a, c in per_asset.items())[len(per_asset) * 3 // 4][1]
    stats.update(sessions=len(sess_rows), commands=len(cmd_rows), activities=len(act_rows), insert_s=insert_s,
                 db_mib=(db_path.stat().st_size / 2 ** 20), users=len(per_user), assets=len(per_asset),
                 typical_user=typical_user, typical_user_sessions=per_user[typical_user],
                 plain_user_sessions=per_user.get(plain_user, 0), typical_asset=typical_asset,
                 typical_asset_sessions=per_asset[typical_asset], detail_ids=detail_ids,
                 term_sessions={k: len(v) for k, v in terms.items()}, now=now)
    return stats


# --------------------------------------------------------------------------------------------
# the SQL the store runs for a request (mirrors Sources/GatehouseCore/Store/SQLiteSessionStore.swift),
# for EXPLAIN QUERY PLAN and for timing SQLite alone


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    if len(text) == 10:
        text += "T00:00:00+00:00"
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def sessions_sql(params: dict, caller_user: str | None = None) -> list[tuple[str, str, list]]:
    """[(label, sql, args)]: the count and the page query of GET /api/v1/sessions."""
    clauses, args = [], []
    state = params.get("state", "")
    states = [] if not state else ["online"] if state == "online" else ENDED_STATES if state == "finished" else [state]
    if states:
        clauses.append(f"state IN ({', '.join('?' for _ in states)})")
        args += states
    user = params.get("user") or caller_user
    if user:
        clauses.append("user = ?"); args.append(user)
    if params.get("asset"):
        clauses.append("asset = ?"); args.append(params["asset"])
    if params.get("protocol"):
        clauses.append("protocol = ?"); args.append(params["protocol"])
    if params.get("since"):
        clauses.append("started_at >= ?"); args.append(_epoch(params["since"]))
    if params.get("until"):
        clauses.append("started_at < ?"); args.append(_epoch(params["until"]))
    if params.get("q"):
        clauses.append("EXISTS (SELECT 1 FROM command c WHERE c.session_id = session.id AND c.command LIKE ? ESCAPE '\\')")
        args.append(_like(params["q"]))
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    column = {"started": "started_at", "ended": "ended_at", "user": "user", "asset": "asset",
              "duration": "(COALESCE(ended_at, strftime('%s','now')) - started_at)"}[params.get("sort") or "started"]
    direction = "ASC" if params.get("order") == "asc" else "DESC"
    per_page = int(params.get("per_page", 50))
    offset = (int(params.get("page", 1)) - 1) * per_page
    return [("count", f"SELECT COUNT(*) FROM session {where}", list(args)),
            ("page", f"SELECT * FROM session {where} ORDER BY {column} {direction}, started_at {direction} LIMIT ? OFFSET ?",
             args + [per_page, offset])]


def commands_sql(params: dict) -> list[tuple[str, str, list]]:
    clauses, args = [], []
    if params.get("q"):
        clauses.append("c.command LIKE ? ESCAPE '\\'"); args.append(_like(params["q"]))
    if params.get("user"):
        clauses.append("s.user = ?"); args.append(params["user"])
    if params.get("asset"):
        clauses.append("s.asset = ?"); args.append(params["asset"])
    if params.get("risk"):
        clauses.append("c.risk = ?"); args.append(params["risk"])
    if params.get("since"):
        clauses.append("c.time >= ?"); args.append(_epoch(params["since"]))
    if params.get("until"):
        clauses.append("c.time < ?"); args.append(_epoch(params["until"]))
    per_page = int(params.get("per_page", 50))
    offset = (int(params.get("page", 1)) - 1) * per_page
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    return [("search", f"SELECT c.*, s.user, s.asset, s.account FROM command c JOIN session s ON s.id = c.session_id {where} "
                       f"ORDER BY c.time DESC LIMIT ? OFFSET ?", args + [per_page, offset])]


def detail_sql(kind: str, sid: str) -> list[tuple[str, str, list]]:
    out = [("session", "SELECT * FROM session WHERE id >= ? AND id < ? ORDER BY id LIMIT 5", [sid, sid + "\U0010FFFF"])]
    if kind == "commands":
        out.append(("commands", "SELECT * FROM command WHERE session_id = ? ORDER BY time, id", [sid]))
    elif kind == "activities":
        out.append(("activities", "SELECT time, kind, detail FROM activity WHERE session_id = ? ORDER BY time, id", [sid]))
    return out


def explain(con: sqlite3.Connection, sql: str, args: list) -> list[str]:
    return [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql, args)]


def time_sql(con: sqlite3.Connection, sql: str, args: list, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        con.execute(sql, args).fetchall()
        out.append((time.perf_counter() - t0) * 1000)
    return out


# --------------------------------------------------------------------------------------------
# HTTP


class Client:
    """One keep-alive HTTP/1.1 connection to the gateway (http.client), bearer token."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = None
        self.reconnects = -1

    def get(self, path: str) -> tuple[int, bytes, float]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.conn.connect()
                self.reconnects += 1
            try:
                t0 = time.perf_counter()
                self.conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
                r = self.conn.getresponse()
                body = r.read()
                dt = (time.perf_counter() - t0) * 1000
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, body, dt
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return total - v[3] - v[4], total


def gateway_cpu(gw) -> float | None:
    try:
        with open(f"/proc/{gw.proc.pid}/stat") as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def q(path: str, **params) -> str:
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def build_queries(st: dict, admin: str, plain_user: str) -> list[dict]:
    """The requests to time: {key, group, label, path, params, who, sql}."""
    now = st["now"]
    day = lambda d: datetime.datetime.fromtimestamp(now - d * DAY, datetime.timezone.utc)  # noqa: E731
    since_d = day(37).strftime("%Y-%m-%d")
    until_iso = day(30).strftime("%Y-%m-%dT00:00:00Z")
    first = {"state": "finished", "per_page": 25, "page": 1, "sort": "started", "order": "desc"}
    L = []

    def lst(key, group, label, who="admin", **extra):
        params = dict(first, **extra)
        L.append({"key": key, "group": group, "label": label, "path": q("/api/v1/sessions", **params), "params": params,
                  "who": who, "kind": "sessions"})

    lst("first", "first page", "first page: `state=finished&per_page=25` (what the console asks for)")
    lst("first_user", "first page", f"first page as the plain user `{plain_user}` (role user: own sessions only, {st['plain_user_sessions']})",
        who="user")
    lst("f_user", "filter", f"`user={st['typical_user']}` ({st['typical_user_sessions']} sessions)", user=st["typical_user"])
    lst("f_asset", "filter", f"`asset={st['typical_asset']}` ({st['typical_asset_sessions']} sessions)", asset=st["typical_asset"])
    lst("f_proto", "filter", f"`protocol=sftp` ({st['by_protocol'].get('sftp', 0)} sessions)", protocol="sftp")
    lst("f_state", "filter", f"`state=terminated` ({st['by_state'].get('terminated', 0)} sessions)", state="terminated")
    lst("f_range", "filter", f"`since={since_d}&until={until_iso}` (one week, a month ago)", since=since_d, until=until_iso)
    lst("f_q_common", "filter", f"`q=systemctl` (common: {st['term_sessions'].get('systemctl', 0)} sessions)", q="systemctl")
    lst("f_q_rare", "filter", f"`q=pg_dump` (rare: {st['term_sessions'].get('pg_dump', 0)} sessions)", q="pg_dump")
    lst("f_q_none", "filter", "`q=no-such-command` (no match)", q="no-such-command")
    lst("f_combo", "filter", f"`user={st['typical_user']}&q=systemctl&since={since_d}` (combined)", user=st["typical_user"],
        q="systemctl", since=since_d)
    for key in ("started", "ended", "user", "asset", "duration"):
        for order in ("desc", "asc"):
            lst(f"s_{key}_{order}", "sort", f"`sort={key}&order={order}`", sort=key, order=order)
    lst("deep", "deep page", "`page=300` (rows 7,476–7,500 of the newest first)", page=300)
    lst("deep_duration", "deep page", "`page=300&sort=duration`", page=300, sort="duration")
    ids = st["detail_ids"]
    for kind, suffix in (("detail", ""), ("commands", "/commands"), ("activities", "/activities")):
        L.append({"key": f"d_{kind}", "group": "session", "label": f"`GET /api/v1/sessions/{{id}}{suffix}`", "who": "admin",
                  "kind": kind, "paths": [f"/api/v1/sessions/{i}{suffix}" for i in ids], "ids": ids})
    for key, label, params in (("c_latest", "`GET /api/v1/commands` (latest, no filter)", {}),
                               ("c_common", "`GET /api/v1/commands?q=systemctl`", {"q": "systemctl"}),
                               ("c_rare", "`GET /api/v1/commands?q=pg_dump`", {"q": "pg_dump"}),
                               ("c_none", "`GET /api/v1/commands?q=no-such-command` (no match)", {"q": "no-such-command"}),
                               ("c_denied", "`GET /api/v1/commands?risk=denied`", {"risk": "denied"})):
        L.append({"key": key, "group": "commands", "label": label, "path": q("/api/v1/commands", **params), "params": params,
                  "who": "admin", "kind": "search"})
    return L


def statements(qd: dict, plain_user: str, sid: str | None = None) -> list[tuple[str, str, list]]:
    if qd["kind"] == "sessions":
        return sessions_sql(qd["params"], plain_user if qd["who"] == "user" else None)
    if qd["kind"] == "search":
        return commands_sql(qd["params"])
    return detail_sql(qd["kind"], sid or qd["ids"][0])


def run_http(queries: list[dict], clients: dict, rounds: int, seed: int, tag: str) -> dict:
    """Every query once per round, in a shuffled order per round. Returns {key: {"ms": [...], ...}}."""
    res = {qd["key"]: {"ms": [], "status": {}, "bytes": [], "total": None} for qd in queries}
    rng = random.Random(seed)
    for rnd in range(rounds):
        order = list(queries)
        rng.shuffle(order)
        for qd in order:
            path = qd["paths"][rnd % len(qd["paths"])] if "paths" in qd else qd["path"]
            status, body, ms = clients[qd["who"]].get(path)
            r = res[qd["key"]]
            r["ms"].append(ms)
            r["status"][status] = r["status"].get(status, 0) + 1
            r["bytes"].append(len(body))
            if status != 200 and "error" not in r:
                r["error"] = body[:300].decode(errors="replace")
            if status == 200 and r["total"] is None:
                try:
                    j = json.loads(body)
                    r["total"] = j.get("total")
                    lists = [j[k] for k in ("sessions", "commands", "activities") if isinstance(j.get(k), list)]
                    r["rows"] = len(lists[0]) if lists else 1
                except ValueError:
                    pass
        log(f"{tag} round {rnd + 1}/{rounds}: first page {res['first']['ms'][-1]:.1f} ms" if "first" in res else
            f"{tag} round {rnd + 1}/{rounds}")
    return res


# --------------------------------------------------------------------------------------------
# the console in headless Chromium

GRID_PROBE = r"""
(() => {
  window.__gh = {};
  const seen = () => {
    const grid = document.getElementById("history-grid");
    if (grid && window.__gh.grid === undefined && grid.querySelectorAll("tbody tr").length > 0) {
      window.__gh.grid = performance.now();
      window.__gh.rows = grid.querySelectorAll("tbody tr").length;
      requestAnimationFrame(() => { window.__gh.frame = performance.now(); });
    }
  };
  new MutationObserver(seen).observe(document, { childList: true, subtree: true });
})();
"""


def run_browser(base: str, admin: str, password: str, rounds: int) -> dict:
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions as EC  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
              "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-sync",
              "--disable-component-update", "--disable-default-apps", "--metrics-recording-only"):
        opts.add_argument(a)
    service = Service(CHROMEDRIVER, log_output=subprocess.DEVNULL)
    out = {"rounds": [], "version": None, "errors": []}
    t0 = time.perf_counter()
    driver = webdriver.Chrome(service=service, options=opts)
    driver_pid = service.process.pid if service.process else None
    try:
        out["startup_s"] = time.perf_counter() - t0
        out["version"] = driver.capabilities.get("browserVersion")
        driver.set_page_load_timeout(30)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": GRID_PROBE})
        # log in through the login page
        driver.get(base + "/login?next=" + urllib.parse.quote("/#history"))
        driver.find_element(By.ID, "username").send_keys(admin)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.ID, "signin").click()
        WebDriverWait(driver, 30, poll_frequency=0.02).until(EC.presence_of_element_located((By.ID, "history-grid")))
        for rnd in range(rounds + 1):  # round 0 warms the browser's caches up and is not counted
            driver.get("about:blank")
            t1 = time.perf_counter()
            driver.get(base + "/#history")
            WebDriverWait(driver, 30, poll_frequency=0.005).until(
                lambda d: d.execute_script("return window.__gh && window.__gh.frame !== undefined"))
            wall = (time.perf_counter() - t1) * 1000
            m = driver.execute_script("""
              const nav = performance.getEntriesByType("navigation")[0] || {};
              const res = performance.getEntriesByType("resource").map(r => ({name: r.name.replace(location.origin, ""),
                  start: r.startTime, end: r.responseEnd, dur: r.duration}));
              return {grid: window.__gh.grid, frame: window.__gh.frame, rows: window.__gh.rows,
                      html: nav.responseEnd, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, res: res,
                      info: (document.getElementById("page-info") || {}).textContent};""")
            m["wall"] = wall
            if rnd == 0:
                out["warmup"] = m
                continue
            out["rounds"].append(m)
        log(f"browser: {rounds} page loads, grid at {med([r['grid'] for r in out['rounds']]):.0f} ms (median)")
    finally:
        kids = H.descendants(driver_pid) if driver_pid else []
        try:
            driver.quit()
        except Exception as e:  # noqa: BLE001
            out["errors"].append(f"quit: {e}")
        for p in kids:
            if H._alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return out


# --------------------------------------------------------------------------------------------
# slow queries: why, and what fixes them (tried on a copy of the database)

# Candidate changes, tried on a copy of the store. "index" ones need no code change and are also
# measured end to end (a gateway on the copy uses them at once); "query" ones need a change in
# SQLiteSessionStore.swift, so only the store's SQL is timed, rewritten by `rewrite`, and its rows are
# compared with the original's.
EXISTS_CMD = "EXISTS (SELECT 1 FROM command c WHERE c.session_id = session.id AND c.command LIKE ? ESCAPE '\\')"
Q_KEYS = ("f_q_common", "f_q_rare", "f_q_none", "f_combo")
C_KEYS = ("c_common", "c_rare", "c_none")


def rewrite_in(sql: str, args: list) -> tuple[str, list]:
    """The command filter as `id IN (...)`: one scan of `command` (a list SQLite builds once per
    statement) instead of an index probe and row reads per session."""
    return sql.replace(EXISTS_CMD, "id IN (SELECT session_id FROM command WHERE command LIKE ? ESCAPE '\\')"), args


def _phrase(args: list) -> tuple[list, bool]:
    """The LIKE argument (`%text%`, escaped) as an FTS5 phrase; False if the text is under 3 characters."""
    out, ok = [], True
    for x in args:
        if isinstance(x, str) and x.startswith("%") and x.endswith("%") and len(x) >= 2:
            text = re.sub(r"\\(.)", r"\1", x[1:-1])
            ok = ok and len(text) >= 3
            out.append('"' + text.replace('"', '""') + '"')
        else:
            out.append(x)
    return out, ok


def rewrite_trigram(sql: str, args: list) -> tuple[str, list]:
    """The command filter answered by an FTS5 trigram index: `MATCH '"text"'` finds the commands that
    contain the text (case-insensitive, like LIKE for ASCII), for texts of 3 characters or more."""
    new_args, ok = _phrase(args)
    if not ok:
        return sql, args
    sql = sql.replace(EXISTS_CMD, "id IN (SELECT c.session_id FROM command c WHERE c.id IN "
                                  "(SELECT rowid FROM command_fts WHERE command_fts MATCH ?))")
    sql = sql.replace("c.command LIKE ? ESCAPE '\\'", "c.id IN (SELECT rowid FROM command_fts WHERE command_fts MATCH ?)")
    return sql, new_args


CANDIDATES = [
    {"name": "command filter as IN (no schema change)", "kind": "query", "applies": Q_KEYS, "setup": [],
     "rewrite": rewrite_in,
     "change": "in `whereClause`: `id IN (SELECT session_id FROM command WHERE command LIKE ? ESCAPE '\\')` instead of the "
               "correlated `EXISTS (SELECT 1 FROM command c WHERE c.session_id = session.id AND c.command LIKE ? ESCAPE '\\')`"},
    {"name": "FTS5 trigram index on command", "kind": "query", "applies": Q_KEYS + C_KEYS,
     "setup": ["CREATE VIRTUAL TABLE command_fts USING fts5(command, content='command', content_rowid='id', tokenize='trigram')",
               "INSERT INTO command_fts (rowid, command) SELECT id, command FROM command"],
     "rewrite": rewrite_trigram,
     "change": "a migration with `CREATE VIRTUAL TABLE command_fts USING fts5(command, content='command', content_rowid='id', "
               "tokenize='trigram')`, filled from `command` and kept in step by an `AFTER INSERT` trigger (and `AFTER DELETE`, "
               "as sessions' rows are deleted with `ON DELETE CASCADE`); texts of 3+ characters then use "
               "`id IN (SELECT c.session_id FROM command c WHERE c.id IN (SELECT rowid FROM command_fts WHERE command_fts MATCH ?))` "
               "(sessions) and `c.id IN (SELECT rowid FROM command_fts WHERE command_fts MATCH ?)` (command search) with the "
               "text as a quoted FTS5 phrase, shorter texts keep the LIKE"},
    {"name": "index on (state, ended_at)", "kind": "index", "applies": ("s_ended_desc", "s_ended_asc"),
     "setup": ["CREATE INDEX session_on_state_ended ON session (state, ended_at, started_at)"], "rewrite": None,
     "change": "`CREATE INDEX session_on_state_ended ON session (state, ended_at, started_at)`"},
    {"name": "index on (protocol, started_at)", "kind": "index", "applies": ("f_proto",),
     "setup": ["CREATE INDEX session_on_protocol ON session (protocol, started_at)"], "rewrite": None,
     "change": "`CREATE INDEX session_on_protocol ON session (protocol, started_at)`"},
]


def analyse(db: Path, queries: list[dict], results: dict, plain_user: str, reps: int) -> dict:
    """EXPLAIN QUERY PLAN and SQLite-only time of every statement of every query (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = {}
    for qd in queries:
        sts = []
        for label, sql, args in statements(qd, plain_user):
            ms = time_sql(con, sql, args, reps)
            sts.append({"label": label, "sql": sql, "args": args, "plan": explain(con, sql, args), "ms": med(ms)})
        out[qd["key"]] = sts
    con.close()
    return out


def try_fixes(db: Path, work: Path, queries: list[dict], watch: list[str], plain_user: str, reps: int) -> list[dict]:
    """For each candidate that applies to a watched query: a fresh copy of the store with it, then the SQL
    of every query it applies to timed before and after, the new plan, and whether the rows are the same."""
    out = []
    byk = {qd["key"]: qd for qd in queries}
    for cand in CANDIDATES:
        if not any(k in watch for k in cand["applies"]):
            continue
        keys = [k for k in cand["applies"] if k in byk]
        copy = work / f"fix-{re.sub(r'[^a-z0-9]+', '-', cand['name'].lower())}.sqlite"
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        # an index changes the original statement's plan: "before" is timed without it. A rewrite
        # leaves the original alone: both are timed on the prepared copy, alternately (fairer on a
        # noisy machine).
        before = {}
        if cand["kind"] == "index":
            for k in keys:
                before[k] = [(med(time_sql(dst, s, a, reps)), dst.execute(s, a).fetchall()) for _, s, a in statements(byk[k], plain_user)]
        t0 = time.perf_counter()
        for s in cand["setup"]:
            dst.execute(s)
        dst.commit()
        build_s = time.perf_counter() - t0
        rows = []
        for k in keys:
            after = []
            for i, (l, s, a) in enumerate(statements(byk[k], plain_user)):
                s2, a2 = cand["rewrite"](s, a) if cand["rewrite"] else (s, a)
                if cand["kind"] == "index":
                    b_ms, b_rows = before[k][i]
                    a_ms = med(time_sql(dst, s2, a2, reps))
                else:
                    b_rows = dst.execute(s, a).fetchall()
                    bs, as_ = [], []
                    for _ in range(reps):
                        bs += time_sql(dst, s, a, 1)
                        as_ += time_sql(dst, s2, a2, 1)
                    b_ms, a_ms = med(bs), med(as_)
                same = dst.execute(s2, a2).fetchall() == b_rows
                after.append({"label": l, "before": b_ms, "after": a_ms, "same": same, "plan": explain(dst, s2, a2)})
            rows.append({"key": k, "statements": after, "watched": k in watch})
        dst.close()
        out.append({"name": cand["name"], "kind": cand["kind"], "setup": cand["setup"], "change": cand["change"],
                    "build_s": build_s, "db_mib_after": copy.stat().st_size / 2 ** 20, "rows": rows, "copy": str(copy)})
    return out


# --------------------------------------------------------------------------------------------
# report


def summarize(ms: list[float]) -> dict:
    return {"n": len(ms), "median": med(ms), "p95": pct(ms, 95), "min": min(ms) if ms else None, "max": max(ms) if ms else None}


def render(res: dict, info: dict, a) -> str:
    st, qs, http_res = res["store"], res["queries"], res["http"]
    L = [SECTION_TITLE, ""]
    L.append(f"`benchmarks/console_scale.py` (run {res['started']:%Y-%m-%d %H:%M %Z}; commit {info['commit']}, release binary built "
             f"{info['built']} (sha256 {info['sha']}…); {info['nproc']} CPUs ({info['cpu']}), shared and noisy, load average at "
             f"start {' '.join(info['load'])}; Python {info['python']}, SQLite {sqlite3.sqlite_version}"
             + (f", {res['browser'].get('browser_name', 'Chromium')} {res['browser']['version']} headless" if res.get("browser", {}).get("version") else "")
             + ").")
    if info.get("note"):
        L.append(f"({info['note']})")
    L.append("")
    L.append(f"**Store:** {st['sessions']:,} ended sessions generated over the last 90 days (weekday working hours mostly) by "
             f"{st['users']} users on {st['assets']} assets; states {', '.join(f'{k} {v:,}' for k, v in sorted(st['by_state'].items(), key=lambda kv: -kv[1]))}; "
             f"protocols {', '.join(f'{k} {v:,}' for k, v in sorted(st['by_protocol'].items(), key=lambda kv: -kv[1]))}; "
             f"{st['commands']:,} commands (shell sessions 1–20, exec 1, sftp/rdp/failed none), {st['activities']:,} activities; "
             f"{st['db_mib']:.1f} MiB of SQLite, inserted with Python's sqlite3 in one transaction ({st['insert_s']:.1f} s) while the "
             f"gateway was stopped, into the schema the gateway created. No `ANALYZE` (the gateway never runs it), so the planner "
             f"works without statistics, as in production.")
    L.append("")
    L.append(f"**Method:** {a.rounds} rounds over loopback, one keep-alive HTTP/1.1 connection per caller (`http.client`, bearer "
             f"token of the admin unless noted); every round runs each request once, in a shuffled order; time = request sent "
             f"to last body byte read. The first request after the restart took {res['cold_ms']:.0f} ms (cold; not counted). "
             f"The {len(qs) * a.rounds:,} timed requests took {res['http_s']:.0f} s; the whole machine was "
             f"{res['machine_busy']:.0f} % busy meanwhile (other work on this box included), the gateway used "
             f"{fmt(res.get('gateway_cpu_s'))} s of CPU. "
             f"`SQLite ms` = the same statements the store runs (count + page for lists), timed with Python's sqlite3 on the "
             f"same file: the rest of the HTTP time is the gateway (auth lookup, JSON, HTTP).")
    L.append("")
    L.append(f"| request | rows / total | median ms | p95 ms | max ms | SQLite ms | ≤ {TARGET_MS:.0f} ms |")
    L.append("|---|---|---|---|---|---|---|")
    analysis = res.get("analysis", {})
    for qd in qs:
        r = http_res[qd["key"]]
        s = summarize(r["ms"])
        sqlms = sum(x["ms"] for x in analysis.get(qd["key"], [])) if analysis.get(qd["key"]) else None
        ok = [k for k in r["status"] if k != 200]
        verdict = "**no**" if s["p95"] > TARGET_MS else ("yes" if s["max"] <= TARGET_MS else "yes (max over)")
        if ok:
            verdict = f"HTTP {','.join(map(str, ok))}"
        rows = f"{r.get('rows', '–')}" + (f" / {r['total']:,}" if isinstance(r.get("total"), int) else "")
        L.append(f"| {qd['label']} | {rows} | {fmt(s['median'])} | {fmt(s['p95'])} | {fmt(s['max'])} | {fmt(sqlms)} | {verdict} |")
    L.append("")
    br = res.get("browser")
    if br and br.get("rounds"):
        R = br["rounds"]
        g = [r["grid"] for r in R]
        f = [r["frame"] for r in R]
        def res_of(r, pred):
            xs = [x for x in r["res"] if pred(x["name"])]
            return xs[0] if xs else None
        hist = [res_of(r, lambda n: n.startswith("/api/v1/sessions?") and "state=finished" in n) for r in R]
        onl = [res_of(r, lambda n: "state=online" in n) for r in R]
        me = [res_of(r, lambda n: n.startswith("/api/v1/me")) for r in R]
        L.append(f"**Console page in Chromium** ({len(R)} loads of `/#history` after logging in through `/login`, each from "
                 f"`about:blank`, plus one uncounted warm-up; time from navigation start, Performance API): the "
                 f"historical-sessions table `#history-grid` with its {R[0].get('rows')} rows is in the DOM at "
                 f"**{fmt(med(g), 0)} ms** median (p95 {fmt(pct(g, 95), 0)}, max {fmt(max(g), 0)}), painted (next animation "
                 f"frame) at {fmt(med(f), 0)} ms (p95 {fmt(pct(f, 95), 0)}). Wall clock around `driver.get` + wait: "
                 f"{fmt(med([r['wall'] for r in R]), 0)} ms median (adds WebDriver round trips).")
        L.append("")
        L.append(f"| step (median over the loads, ms from navigation start) | at |")
        L.append("|---|---|")
        L.append(f"| HTML received | {fmt(med([r['html'] for r in R]), 0)} |")
        L.append(f"| DOMContentLoaded (scripts `app.js`, `records.js`) | {fmt(med([r['dcl'] for r in R]), 0)} |")
        if all(me):
            L.append(f"| `GET /api/v1/me` done (took {fmt(med([x['dur'] for x in me]), 0)}) | {fmt(med([x['end'] for x in me]), 0)} |")
        if all(onl):
            L.append(f"| `GET /api/v1/sessions?state=online…` done (took {fmt(med([x['dur'] for x in onl]), 0)}) | {fmt(med([x['end'] for x in onl]), 0)} |")
        if all(hist):
            L.append(f"| `GET /api/v1/sessions?…state=finished` (first page) done (took {fmt(med([x['dur'] for x in hist]), 0)}) | {fmt(med([x['end'] for x in hist]), 0)} |")
        L.append(f"| `#history-grid` in the DOM | {fmt(med(g), 0)} |")
        L.append(f"| next animation frame | {fmt(med(f), 0)} |")
        L.append("")
        L.append("The page fetches `/api/v1/me`, then the online list, then the first page, one after the other "
                 "(records.js awaits each), so the table waits for all three.")
        L.append("")
    elif br and br.get("error"):
        L.append(f"**Console page in Chromium:** not measured: {br['error']}")
        L.append("")
    slow, watch = res["slow"], res["watch"]
    labels = {qd["key"]: qd["label"] for qd in qs}
    ms_of = lambda k: f"median {fmt(med(http_res[k]['ms']), 0)}, p95 {fmt(pct(http_res[k]['ms'], 95), 0)} ms"  # noqa: E731
    if not slow:
        L.append(f"**Verdict:** every request has p95 ≤ {TARGET_MS:.0f} ms with {st['sessions']:,} sessions in the store"
                 + (f"; the console's first page is {fmt(med(http_res['first']['ms']))} ms (API) and the table is on screen "
                    f"{fmt(med([r['frame'] for r in br['rounds']]), 0)} ms after navigation starts"
                    if br and br.get("rounds") else "") + ".")
    else:
        L.append(f"**Over {TARGET_MS:.0f} ms (p95):** " + "; ".join(f"{labels[k]} ({ms_of(k)})" for k in slow) + ".")
    L.append("")
    near = [k for k in watch if k not in slow]
    if near:
        L.append(f"**Closest to the target** (p95 over {a.watch_ms:.0f} ms{', a quarter of it' if a.watch_ms == WATCH_MS else ''}): "
                 + "; ".join(f"{labels[k]} ({ms_of(k)})" for k in near) + ".")
        L.append("")
    if watch:
        L.append("Why (EXPLAIN QUERY PLAN of the statements the store runs; SQLite-only ms):")
        L.append("")
        seen = {}
        for k in watch:
            sig = tuple((x["label"], tuple(x["plan"])) for x in analysis.get(k, []))
            if sig in seen:
                seen[sig].append(k)
                continue
            seen[sig] = [k]
        for sig, keys in seen.items():
            L.append(f"- {', '.join(labels[k] for k in keys)}: " + "; ".join(
                f"{x['label']} {fmt(analysis[keys[0]][i]['ms'])} ms `{' / '.join(x['plan'])}`"
                for i, x in enumerate(analysis.get(keys[0], []))))
        L.append("")
        if any(k in Q_KEYS for k in watch):
            L.append("The command filter (`q=`) is a correlated `EXISTS` evaluated for every ended session (the state index "
                     "gives all of them; the `ORDER BY` needs them all before `LIMIT`), each probing `command_on_session` and "
                     "reading that session's command rows to test the `LIKE '%…%'`; no index can answer a `LIKE` with a "
                     "leading `%`. The count does the same pass again. Cost ∝ commands in the store, whatever the page, "
                     "filter or match count.")
            L.append("")
    for fx in res.get("fixes", []):
        L.append(f"**Tried on a copy of the store: {fx['name']}** — {fx['change']}"
                 + (f" (built in {fx['build_s']:.1f} s, file {fx['db_mib_after']:.1f} MiB after)" if fx["setup"] else "") + ":")
        L.append("")
        L.append("| request | statement | SQLite ms before | after | same rows | plan after |")
        L.append("|---|---|---|---|---|---|")
        for row in fx["rows"]:
            for x in row["statements"]:
                L.append(f"| {labels[row['key']]} | {x['label']} | {fmt(x['before'])} | {fmt(x['after'])} | "
                         f"{'yes' if x['same'] else '**no**'} | `{' / '.join(x['plan'])}` |")
        if fx.get("http"):
            L.append("")
            L.append("End to end, a gateway on that copy (" + str(fx["http_rounds"]) + " rounds): " + "; ".join(
                f"{labels[k]} median {fmt(med(v['ms']), 0)} ms, p95 {fmt(pct(v['ms'], 95), 0)} (was {fmt(med(http_res[k]['ms']), 0)} / "
                f"{fmt(pct(http_res[k]['ms'], 95), 0)})" for k, v in fx["http"].items()) + ".")
        L.append("")
    for n in res.get("notes", []):
        L.append(f"- {n}")
    if res.get("notes"):
        L.append("")
    return "\n".join(L)


def write_section(path: Path, section: str) -> None:
    """Replaces this benchmark's section of RESULTS.md, or inserts it before "## History"."""
    results_md.write_section(path, section, key=SECTION_TITLE.split(" at ")[0])


# --------------------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=120).stdout.strip()


def dirty_sources() -> list[str]:
    """Uncommitted changes (and new files) under Sources/ and the package files."""
    out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all", "--",
                          "Sources", "Package.swift"], capture_output=True, text=True, timeout=60).stdout
    return [l[3:] for l in out.splitlines() if len(l) > 3]


def binary_state(a) -> tuple[bool, str]:
    """(build needed?, why): the binary is older than the last commit that changed the sources."""
    b = a.gatehouse_bin
    if not b.exists():
        return True, "no binary yet"
    src_ct = int(git("log", "-1", "--format=%ct", "--", "Sources", "Package.swift") or 0)
    if b.stat().st_mtime < src_ct:
        return True, "binary older than HEAD's last change to Sources/"
    return False, "binary newer than HEAD's last change to Sources/"


def stamp_path(a) -> Path:
    return a.gatehouse_bin.with_name(a.gatehouse_bin.name + ".console-scale.json")


def sha256(path: Path) -> str:
    import hashlib  # noqa: PLC0415
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync_tree(src: Path, dst: Path) -> None:
    """Makes dst a copy of src, leaving files whose content did not change untouched (so an incremental
    build stays incremental)."""
    import filecmp  # noqa: PLC0415
    dst.mkdir(parents=True, exist_ok=True)
    want = {p.relative_to(src) for p in src.rglob("*")}
    for p in sorted(dst.rglob("*"), reverse=True):
        rel = p.relative_to(dst)
        if rel.parts and rel.parts[0] == ".build":
            continue
        if rel not in want:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for rel in sorted(want):
        s_, d = src / rel, dst / rel
        if s_.is_dir() and not s_.is_symlink():
            d.mkdir(parents=True, exist_ok=True)
        elif not d.exists() or not filecmp.cmp(s_, d, shallow=False):
            shutil.copy2(s_, d)


def build(a, why: str) -> dict:
    """swift build -c release --product gatehouse --scratch-path SCRATCH. With uncommitted changes under
    Sources/ (someone's work in progress) it builds HEAD instead, from a `git archive` export kept in
    SCRATCH-src (updated file by file, so the build stays incremental), so the work in progress can
    neither break the build nor end up in the measurement. --worktree builds the working tree anyway."""
    head = git("rev-parse", "--short", "HEAD")
    dirty = dirty_sources()
    argv = ["swift", "build", "-c", "release", "--product", "gatehouse", "--scratch-path", str(a.scratch_path)]
    source = "working tree"
    if dirty and not a.worktree:
        export = a.scratch_path.with_name(a.scratch_path.name + "-src")
        with tempfile.TemporaryDirectory(prefix="gatehouse-head-") as tmp:
            p = subprocess.run(f"git -C {shlex_quote(REPO)} archive --format=tar HEAD | tar -x -C {shlex_quote(tmp)}",
                               shell=True, capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"git archive failed: {p.stderr[-500:]}")
            if (REPO / "Package.resolved").exists() and not (Path(tmp) / "Package.resolved").exists():
                shutil.copy2(REPO / "Package.resolved", Path(tmp) / "Package.resolved")  # same dependency versions, no resolving
            sync_tree(Path(tmp), export)
        # Its own scratch directory: SwiftPM keyed to the working tree's would call the export's
        # build up to date and leave the other tree's binary in place.
        scratch = a.scratch_path.with_name(a.scratch_path.name + "-head")
        argv[argv.index("--scratch-path") + 1] = str(scratch)
        argv += ["--package-path", str(export)]
        a.gatehouse_bin = (scratch / "release" / "gatehouse").resolve()
        source = f"HEAD ({head}) exported to {export.name}/, the working tree having uncommitted changes under Sources/"
    log(f"{' '.join(argv)} ({'--build' if a.build else why}; building {source})")
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError("swift build failed:\n" + (p.stdout + p.stderr)[-3000:])
    log(f"built in {time.monotonic() - t0:.0f} s")
    stamp = {"sha256": sha256(a.gatehouse_bin), "commit": head + ("+uncommitted-changes" if dirty and a.worktree else ""),
             "source": source, "dirty": dirty if a.worktree else []}
    stamp_path(a).write_text(json.dumps(stamp, indent=1))
    return stamp


def shlex_quote(x) -> str:
    import shlex  # noqa: PLC0415
    return shlex.quote(str(x))


def commit_info(a) -> dict:
    """What was measured: from this script's build stamp when it matches the binary, else HEAD (with a
    note when Sources/ has uncommitted changes the binary may or may not contain)."""
    info = H.machine_info(a)
    head = git("rev-parse", "--short", "HEAD")
    stamp = None
    try:
        stamp = json.loads(stamp_path(a).read_text())
        if stamp.get("sha256") != sha256(a.gatehouse_bin):
            stamp = None
    except (OSError, ValueError):
        pass
    note = ""
    if a.commit:
        commit = a.commit
    elif stamp:
        commit = stamp["commit"]
        if stamp["dirty"]:
            note = f"built from the working tree with uncommitted changes under Sources/ ({', '.join(stamp['dirty'])})"
        elif "exported" in stamp["source"]:
            note = f"built from a `git archive` export of {stamp['commit']}: the working tree's uncommitted changes are not in it"
        if stamp["commit"].split("+")[0] != head:
            note = (note + "; " if note else "") + f"HEAD is now {head}, the binary was built from {stamp['commit']}"
    else:
        commit = head
        dirty = dirty_sources()
        if dirty:
            mt = a.gatehouse_bin.stat().st_mtime
            older = [p for p in dirty if (REPO / p).exists() and (REPO / p).stat().st_mtime <= mt]
            if older:
                commit += "+uncommitted-changes?"
                note = (f"binary not built by this script; the working tree had uncommitted changes under Sources/ older than "
                        f"the binary ({', '.join(older)}), which it may contain")
    info["commit"], info["note"] = commit, note
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description="The web console and API with 10,000 sessions in the store. See benchmarks/README.md.")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 HTTP rounds, 3 page loads, 2000 sessions")
    ap.add_argument("--sessions", type=int, help="sessions to generate (default 10000)")
    ap.add_argument("--rounds", "-n", type=int, help="HTTP rounds: each request once per round (default 30)")
    ap.add_argument("--browser-rounds", type=int, help="page loads in Chromium (default 20; 0 skips the browser)")
    ap.add_argument("--seed", type=int, default=20261125, help="seed of the generated store (default 20261125)")
    ap.add_argument("--watch-ms", type=float, default=WATCH_MS,
                    help=f"explain, and try fixes for, every request with p95 over this (default {WATCH_MS:.0f} ms, a quarter of the target)")
    ap.add_argument("--no-fixes", action="store_true", help="do not try candidate changes on a copy of the store")
    ap.add_argument("--gatehouse-bin", type=Path, help="gateway binary (default: SCRATCH/release/gatehouse)")
    ap.add_argument("--scratch-path", type=Path, default=REPO / ".build-bench",
                    help="SwiftPM build dir for the release build (default .build-bench, so it never waits on .build)")
    ap.add_argument("--no-build", action="store_true", help="never build; use the existing binary")
    ap.add_argument("--build", action="store_true", help="always build (default: only if the binary is older than HEAD's sources)")
    ap.add_argument("--worktree", action="store_true", help="build the working tree even with uncommitted changes under Sources/ "
                                                           "(default then: build HEAD from a `git archive` export)")
    ap.add_argument("--commit", help="what to record as the measured commit, for a binary built elsewhere")
    ap.add_argument("--results", type=Path, help="write the Markdown section into this file (replaces the section if present)")
    ap.add_argument("--write-results", action="store_true", help="same as --results benchmarks/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also dump the raw results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (gateway log, config, database and its copies)")
    a = ap.parse_args()
    a.sessions = a.sessions or (2000 if a.quick else 10000)
    a.rounds = a.rounds or (3 if a.quick else 30)
    a.browser_rounds = a.browser_rounds if a.browser_rounds is not None else (3 if a.quick else 20)
    a.gatehouse_bin = (a.gatehouse_bin or a.scratch_path / "release" / "gatehouse").resolve()
    results_path = a.results or (BENCH_DIR / "RESULTS.md" if a.write_results else None)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, H._on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    t_start = time.monotonic()
    need, why = binary_state(a)
    if a.build or (need and not a.no_build):
        try:
            build(a, why)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(str(e))
            return 2
    else:
        log(f"not building: {why if not a.no_build else '--no-build'}")
    if not os.access(a.gatehouse_bin, os.X_OK):
        log(f"no gateway binary at {a.gatehouse_bin}")
        return 2
    info = commit_info(a)

    tmp = Path(tempfile.mkdtemp(prefix="gatehouse-bench-console-"))
    res = {"started": datetime.datetime.now().astimezone(), "notes": [], "fixes": []}
    gws = []
    rc = 0
    admin, plain_user = "ada", "uma"
    try:
        log(f"work dir {tmp}")
        password = secrets.token_urlsafe(12)
        hashes = {}
        for u in (admin, plain_user):
            p = subprocess.run([str(a.gatehouse_bin), "hash-password", "--password", password if u == admin else secrets.token_urlsafe(12)],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            if p.returncode != 0 or not p.stdout.strip().startswith("$argon2"):
                raise RuntimeError(f"hash-password failed: {p.stdout} {p.stderr}")
            hashes[u] = p.stdout.strip().splitlines()[-1]
        (tmp / "keys").mkdir()
        account_key = H.keygen(tmp / "keys" / "account", "bench-account")
        gw = ConsoleGateway(a.gatehouse_bin, tmp / "gateway", account_key, admin, hashes[admin], plain_user, hashes[plain_user], 4096)
        gws.append(gw)
        gw.start()
        tokens = {}
        for who, u in (("admin", admin), ("user", plain_user)):
            p = subprocess.run([str(a.gatehouse_bin), "token", "create", "--user", u, "--config", str(gw.config)],
                               cwd=gw.dir, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            lines = p.stdout.strip().splitlines()
            if p.returncode != 0 or not lines:
                raise RuntimeError(f"gatehouse token create failed rc={p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")
            tokens[who] = lines[-1].strip()
        gw.stop()
        log(f"gateway stopped; generating {a.sessions:,} sessions into {gw.db_path}")
        st = fill_store(gw.db_path, a.sessions, a.seed, admin, plain_user)
        res["store"] = st
        log(f"store: {st['sessions']:,} sessions, {st['commands']:,} commands, {st['activities']:,} activities, "
            f"{st['db_mib']:.1f} MiB, inserted in {st['insert_s']:.1f} s")
        gw.start()
        log(f"gateway restarted (pid {gw.proc.pid}), web :{gw.web_port}")
        clients = {w: Client(gw.web_port, t) for w, t in tokens.items()}
        queries = build_queries(st, admin, plain_user)
        res["queries"] = queries
        status, body, ms = clients["admin"].get(queries[0]["path"])
        if status != 200:
            raise RuntimeError(f"first page: HTTP {status}: {body[:300]!r}")
        res["cold_ms"] = ms
        total = json.loads(body)["total"]
        if total != st["sessions"] + st["existing_before"]:
            res["notes"].append(f"the first page reports total {total}, expected {st['sessions']}")
        run_http(queries, clients, 1, a.seed - 1, "warm-up")
        b0, c0 = machine_cpu(), gateway_cpu(gw)
        t0 = time.monotonic()
        res["http"] = run_http(queries, clients, a.rounds, a.seed, "http")
        b1, c1 = machine_cpu(), gateway_cpu(gw)
        res["http_s"] = time.monotonic() - t0
        res["machine_busy"] = 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
        res["gateway_cpu_s"] = (c1 - c0) if c0 is not None and c1 is not None else None
        res["reconnects"] = {w: c.reconnects for w, c in clients.items()}
        # what the console sends for "To": toISOString(), with milliseconds
        ms_until = datetime.datetime.fromtimestamp(st["now"] - 30 * DAY, datetime.timezone.utc).strftime("%Y-%m-%dT00:00:00.000Z")
        status, body, _ = clients["admin"].get(q("/api/v1/sessions", state="finished", per_page=25, until=ms_until))
        res["console_until"] = {"status": status, "body": body[:200].decode(errors="replace"), "until": ms_until}
        if status != 200:
            res["notes"].append(f"The console's \"To\" filter sends `until` as `Date.toISOString()` (`{ms_until}`, with milliseconds); "
                                f"the API answers HTTP {status}: {body[:160].decode(errors='replace')}")
        if a.browser_rounds:
            try:
                res["browser"] = run_browser(f"http://127.0.0.1:{gw.web_port}", admin, password, a.browser_rounds)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                res["browser"] = {"error": f"{type(e).__name__}: {e}"}
        # why the slow ones are slow, and what the ones closest to the target would need
        p95 = {qd["key"]: pct(res["http"][qd["key"]]["ms"], 95) for qd in queries}
        res["slow"] = [k for k, v in p95.items() if v > TARGET_MS]
        res["watch"] = [k for k, v in p95.items() if v > a.watch_ms]
        log("over the target: " + (", ".join(res["slow"]) or "none") + "; over a quarter of it: " + (", ".join(res["watch"]) or "none"))
        res["analysis"] = analyse(gw.db_path, queries, res["http"], plain_user, 7)
        if res["watch"] and not a.no_fixes:
            res["fixes"] = try_fixes(gw.db_path, tmp, queries, res["watch"], plain_user, 7)
            # the index candidates end to end: a gateway on a copy that has all of them
            idx = [fx for fx in res["fixes"] if fx["kind"] == "index"]
            if idx:
                gw.stop()
                gw2 = ConsoleGateway(a.gatehouse_bin, tmp / "gateway-indexed", account_key, admin, hashes[admin], plain_user,
                                     hashes[plain_user], 4096)
                gws.append(gw2)
                shutil.copytree(gw.dir / "var", gw2.dir / "var")
                con = sqlite3.connect(gw2.db_path)
                for fx in idx:
                    for stmt in fx["setup"]:
                        con.execute(stmt)
                con.commit()
                con.close()
                gw2.start()
                c2 = {w: Client(gw2.web_port, t) for w, t in tokens.items()}
                keys = sorted({r["key"] for fx in idx for r in fx["rows"]})
                sub = [qd for qd in queries if qd["key"] in keys]
                rounds2 = max(3, a.rounds // 2)
                run_http(sub, c2, 1, a.seed - 2, "indexed warm-up")
                h2 = run_http(sub, c2, rounds2, a.seed + 1, "indexed")
                for fx in idx:
                    fx["http"] = {r["key"]: h2[r["key"]] for r in fx["rows"]}
                    fx["http_rounds"] = rounds2
                gw2.stop()
    except (KeyboardInterrupt, H.Interrupted) as e:
        log(f"interrupted ({e or 'Ctrl-C'}); cleaning up")
        rc = 130
    except Exception as e:  # noqa: BLE001
        log(f"aborted: {e}")
        traceback.print_exc()
        for g in gws:
            if g.log_path.exists():
                log("gateway stderr tail:\n" + H.read_tail(g.log_path))
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for g in gws:
            try:
                g.stop()
            except Exception:  # noqa: BLE001
                pass
        PROCS.stop_all()
        if a.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    res["elapsed_s"] = time.monotonic() - t_start
    log(f"done in {res['elapsed_s']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str))
    if rc == 0 and res.get("http"):
        body = render(res, info, a)
        print()
        print(body)
        if results_path:
            write_section(results_path, body)
            log(f"wrote the section to {results_path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
