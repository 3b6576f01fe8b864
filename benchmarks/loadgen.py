#!/usr/bin/env python3
"""asyncssh helpers for benchmarks/run: many SSH sessions from one process.

  loadgen.py asset   --port P --host-key F --authorized-keys F
      An SSH server (the "asset" for the memory/capacity part). Every session with a shell
      prints "$ " and echoes what it receives; `exec true` (or any command) exits 0 at once.
      Prints {"ready": true} on stdout when listening; runs until stdin closes or SIGTERM.

  loadgen.py clients --port P --login alice@mem01 --key F [--command CMD]
      A swarm of SSH clients, each with its own connection and one PTY session (a shell, or
      CMD). Controlled by JSON lines on stdin, one JSON reply per command on stdout:
        {"cmd": "open", "total": N}   open sessions until N are open (stops after --max-errors failures)
        {"cmd": "stats"}              counts and bytes received so far
        {"cmd": "close"}              close every session
        {"cmd": "quit"}               close every session and exit (also on stdin EOF)

Every network wait has a timeout. Only 127.0.0.1 is used by benchmarks/run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections import Counter

import asyncssh


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def stdin_lines():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        line = line.strip()
        if line:
            yield line


# ------------------------------------------------------------------------------------------
# the asset server


class AssetSession(asyncssh.SSHServerSession):
    def __init__(self):
        self.chan = None
        self.command = None

    def connection_made(self, chan):
        self.chan = chan

    def pty_requested(self, term_type, term_size, term_modes):
        return True

    def shell_requested(self):
        return True

    def exec_requested(self, command):
        self.command = command
        return True

    def session_started(self):
        if self.command is None:
            self.chan.write(b"$ ")
        else:
            self.chan.exit(0)

    def data_received(self, data, datatype):
        if self.command is None:
            self.chan.write(data)

    def eof_received(self):
        self.chan.exit(0)
        return False

    def break_received(self, msec):
        return False


class AssetServer(asyncssh.SSHServer):
    def session_requested(self):
        return AssetSession()


async def run_asset(args) -> None:
    limits = raise_nofile()
    server = await asyncssh.listen(
        "127.0.0.1", args.port, server_factory=AssetServer, server_host_keys=[args.host_key],
        authorized_client_keys=args.authorized_keys, backlog=4096, encoding=None,
        login_timeout=60, keepalive_interval=0, config=None)
    emit({"ready": True, "port": args.port, "nofile": limits})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    async def watch_stdin():
        async for _ in stdin_lines():
            pass
        stop.set()

    watcher = asyncio.create_task(watch_stdin())
    await stop.wait()
    watcher.cancel()
    server.close()


# ------------------------------------------------------------------------------------------
# the client swarm


class StageError(Exception):
    """A session that could not be set up, with the step that failed."""


class ClientSession(asyncssh.SSHClientSession):
    def __init__(self, swarm: "Swarm"):
        self.swarm = swarm
        self.first = asyncio.get_running_loop().create_future()
        self.bytes = 0
        self.abandoned = False  # setup failed and we dropped it: not an unexpected close
        self.head = b""  # the first bytes received (any stream), quoted when setup fails

    def data_received(self, data, datatype):
        self.bytes += len(data)
        self.swarm.bytes += len(data)
        if len(self.head) < 300:
            self.head += data[:300 - len(self.head)]
        if not self.first.done():
            want = self.swarm.args.ready
            if want is None or (datatype is None and want.encode() in self.head):
                self.first.set_result(True)

    def connection_lost(self, exc):
        # only a session that had become ready (and was handed to the swarm) can close "unexpectedly";
        # one that dies during setup is reported by open_one as a failure to open
        was_ready = self.first.done() and not self.first.cancelled() and self.first.exception() is None
        if not self.first.done():
            said = f"; it said {self.head.decode(errors='replace').strip()[:160]!r}" if self.head else ""
            self.first.set_exception(exc or ConnectionError(f"session closed before it was ready{said}"))
            self.first.exception()  # retrieved: no "never retrieved" noise
        if was_ready and not self.swarm.closing and not self.abandoned:
            self.swarm.unexpected_closed += 1
            if exc is not None:
                self.swarm.late_errors[f"{type(exc).__name__}: {exc}"[:200]] += 1


class Swarm:
    def __init__(self, args):
        self.args = args
        self.options = asyncssh.SSHClientConnectionOptions(
            username=args.login, client_keys=[asyncssh.read_private_key(args.key)], known_hosts=None,
            agent_path=None, preferred_auth="publickey", keepalive_interval=0, config=None,
            connect_timeout=args.timeout, login_timeout=args.timeout)
        self.sessions: list[tuple] = []
        self.closing = False
        self.bytes = 0
        self.unexpected_closed = 0
        self.late_errors: Counter = Counter()

    async def open_one(self):
        conn = None
        made: list[ClientSession] = []

        def factory():
            made.append(ClientSession(self))
            return made[-1]

        stage = "connect+auth"
        try:
            conn = await asyncio.wait_for(asyncssh.connect("127.0.0.1", self.args.port, options=self.options),
                                          self.args.timeout)
            stage = "channel open + pty + shell"
            chan, sess = await asyncio.wait_for(
                conn.create_session(factory, self.args.command, term_type="xterm",
                                    term_size=(80, 24), encoding=None), self.args.timeout)
            stage = "waiting for the asset's first output" if self.args.ready is None else f"waiting for the asset's {self.args.ready!r}"
            await asyncio.wait_for(asyncio.shield(sess.first), self.args.timeout)
            self.sessions.append((conn, chan, sess))
            conn = None
        except asyncio.TimeoutError:
            said = ""
            if made and made[-1].head:
                said = f"; received so far {made[-1].head.decode(errors='replace').strip()[:160]!r}"
            raise StageError(f"Timeout after {self.args.timeout:.0f} s in {stage}{said}") from None
        except Exception as e:
            raise StageError(f"{type(e).__name__} in {stage}: {e}") from e
        finally:
            if conn is not None:
                for sess in made:
                    sess.abandoned = True
                conn.abort()

    def alive(self) -> int:
        return sum(1 for _, chan, _ in self.sessions if not chan.is_closing())

    async def open(self, total: int, max_errors: int) -> dict:
        t0 = time.monotonic()
        want = max(0, total - len(self.sessions))
        sem = asyncio.Semaphore(self.args.concurrency)
        errors: Counter = Counter()
        failed = 0
        opened = 0
        stop = asyncio.Event()
        first_error_at = None

        async def one():
            nonlocal failed, opened, first_error_at
            async with sem:
                if stop.is_set():
                    return
                try:
                    await self.open_one()
                    opened += 1
                except Exception as e:  # noqa: BLE001 - every failure is a result to report
                    failed += 1
                    if first_error_at is None:
                        first_error_at = len(self.sessions)
                    msg = str(e) if isinstance(e, StageError) else f"{type(e).__name__}: {e}"
                    errors[msg[:200]] += 1
                    if failed >= max_errors:
                        stop.set()

        await asyncio.gather(*(one() for _ in range(want)))
        return {"open": len(self.sessions), "alive": self.alive(), "opened": opened, "failed": failed,
                "first_error_at_open": first_error_at, "errors": dict(errors.most_common(5)),
                "elapsed": round(time.monotonic() - t0, 3), "unexpected_closed": self.unexpected_closed}

    def stats(self) -> dict:
        return {"open": len(self.sessions), "alive": self.alive(), "bytes": self.bytes,
                "unexpected_closed": self.unexpected_closed, "late_errors": dict(self.late_errors.most_common(5)),
                "t": time.monotonic()}

    async def close(self) -> dict:
        self.closing = True
        t0 = time.monotonic()
        for conn, _, _ in self.sessions:
            conn.close()
        waits = [conn.wait_closed() for conn, _, _ in self.sessions]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 60)
            except asyncio.TimeoutError:
                for conn, _, _ in self.sessions:
                    conn.abort()
        n = len(self.sessions)
        self.sessions.clear()
        self.closing = False
        return {"closed": n, "elapsed": round(time.monotonic() - t0, 3)}


async def run_clients(args) -> None:
    limits = raise_nofile()
    swarm = Swarm(args)
    emit({"ready": True, "nofile": limits})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    async def commands():
        async for line in stdin_lines():
            try:
                req = json.loads(line)
            except ValueError:
                emit({"error": f"bad request {line[:80]!r}"})
                continue
            cmd = req.get("cmd")
            if cmd == "open":
                emit(await swarm.open(int(req["total"]), int(req.get("max_errors", args.max_errors))))
            elif cmd == "stats":
                emit(swarm.stats())
            elif cmd == "close":
                emit(await swarm.close())
            elif cmd == "quit":
                break
            else:
                emit({"error": f"unknown command {cmd!r}"})
        stop.set()

    task = asyncio.create_task(commands())
    await stop.wait()
    task.cancel()
    await swarm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("asset")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--host-key", required=True)
    a.add_argument("--authorized-keys", required=True)
    c = sub.add_parser("clients")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--login", required=True)
    c.add_argument("--key", required=True)
    c.add_argument("--command", default=None, help="run this instead of a shell (still with a PTY)")
    c.add_argument("--ready", default=None, help="a session counts as open once its stdout contains this text "
                                                 "(default: any output)")
    c.add_argument("--concurrency", type=int, default=32, help="handshakes in flight at once")
    c.add_argument("--timeout", type=float, default=30.0, help="per-session setup timeout, seconds")
    c.add_argument("--max-errors", type=int, default=20, help="stop opening after this many failures")
    args = ap.parse_args()
    asyncio.run(run_asset(args) if args.mode == "asset" else run_clients(args))


if __name__ == "__main__":
    main()
