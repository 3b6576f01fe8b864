#!/usr/bin/env python3
"""RDP desktop sessions: what the gateway costs for a scripted, deterministic 60 s of desktop
activity on the asset, through Gatehouse (xfreerdp -> Gatehouse -> freerdp-shadow-cli) versus
xfreerdp straight to the asset. Measures CPU of the gateway (minus its idle baseline), of the
client, of the asset's RDP server and of the X servers; bytes on the wire to the user; the size of
the desktop recording (.gdr); and checks that the user's screen shows the asset's at the end.
See benchmarks/README.md ("RDP desktop").

The asset and the user are the end-to-end tests' real peers (Tests/e2e/rdp.py: Xvfb +
freerdp-shadow-cli with NLA; xfreerdp on its own Xvfb). The activity is drawn on the asset's
display by this same file run as `--painter` (Xlib through ctypes: no window manager, no toolkit,
its own CPU is small and reported). Reuses the process and gateway helpers of benchmarks/run and
the build step of console_scale.py (through sftp_throughput.py, whose /proc and perf helpers it
uses too).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import importlib.machinery
import importlib.util
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_md  # noqa: E402  (benchmarks/results_md.py)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
E2E_DIR = REPO / "Tests" / "e2e"

SECTION_TITLE = "## 10. RDP desktop: gateway CPU, wire bytes and recording size"
SECTION_KEY = "## 10. RDP desktop"
W, H_ = 1024, 768
TICK = 0.25                 # seconds between two steps of the activity
TICKS = 240                 # 60 s
DURATION = TICKS * TICK
SETUPS = ("direct", "gatehouse")
SETUP_LABEL = {"direct": "direct", "gatehouse": "via Gatehouse"}
ALICE_PASSWORD = "alice-Bench-Rdp-1"
ADAM_PASSWORD = "adam-Bench-Rdp-2"
# the end state of the activity: the e2e tests' asset picture plus a yellow box, so a user's screen
# that froze at the start (which showed the plain picture) does not pass
YELLOW = (0xFF, 0xE0, 0x20)
FINAL_BOX = (820, 40, 980, 160)  # left, top, right, bottom
FINAL_PROBE = ((900, 100), YELLOW)


# ============================================================================================
# The painter: runs on the asset's display (DISPLAY set), draws the scripted activity with Xlib.
# ============================================================================================


class Xlib:
    """The dozen Xlib calls the painter needs, through ctypes (no python-xlib on the box)."""

    def __init__(self):
        X = ctypes.CDLL("libX11.so.6")
        vp, ul, i, ui = ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_uint
        sig = {
            "XOpenDisplay": (vp, [ctypes.c_char_p]),
            "XDefaultScreen": (i, [vp]),
            "XRootWindow": (ul, [vp, i]),
            "XDefaultVisual": (vp, [vp, i]),
            "XDefaultDepth": (i, [vp, i]),
            "XCreateGC": (vp, [vp, ul, ul, vp]),
            "XSetForeground": (i, [vp, vp, ul]),
            "XSetBackground": (i, [vp, vp, ul]),
            "XSetFont": (i, [vp, vp, ul]),
            "XSetGraphicsExposures": (i, [vp, vp, i]),
            "XFillRectangle": (i, [vp, ul, vp, i, i, ui, ui]),
            "XDrawRectangle": (i, [vp, ul, vp, i, i, ui, ui]),
            "XDrawLine": (i, [vp, ul, vp, i, i, i, i]),
            "XDrawString": (i, [vp, ul, vp, i, i, ctypes.c_char_p, i]),
            "XDrawImageString": (i, [vp, ul, vp, i, i, ctypes.c_char_p, i]),
            "XCopyArea": (i, [vp, ul, ul, vp, i, i, ui, ui, i, i]),
            "XCreatePixmap": (ul, [vp, ul, ui, ui, ui]),
            "XCreateImage": (vp, [vp, vp, ui, i, i, ctypes.c_char_p, ui, ui, i, i]),
            "XPutImage": (i, [vp, ul, vp, vp, i, i, i, i, ui, ui]),
            "XLoadQueryFont": (vp, [vp, ctypes.c_char_p]),
            "XSync": (i, [vp, i]),
            "XCloseDisplay": (i, [vp]),
        }
        for name, (res, args) in sig.items():
            f = getattr(X, name)
            f.restype, f.argtypes = res, args
        self.X = X
        self.dpy = X.XOpenDisplay(None)
        if not self.dpy:
            raise SystemExit(f"painter: cannot open display {os.environ.get('DISPLAY')!r}")
        scr = X.XDefaultScreen(self.dpy)
        self.root = X.XRootWindow(self.dpy, scr)
        self.visual = X.XDefaultVisual(self.dpy, scr)
        self.depth = X.XDefaultDepth(self.dpy, scr)
        self.gc = X.XCreateGC(self.dpy, self.root, 0, None)
        X.XSetGraphicsExposures(self.dpy, self.gc, 0)
        self.fonts = {}
        self._keep = []  # image buffers XCreateImage points at

    def font(self, name: str, fallback: str = "fixed") -> tuple[int, int, int]:
        """(font id, char width, ascent) of a fixed-width core font such as 6x13 or 9x15."""
        if name not in self.fonts:
            fs = self.X.XLoadQueryFont(self.dpy, name.encode()) or self.X.XLoadQueryFont(self.dpy, fallback.encode())
            fid = ctypes.cast(fs, ctypes.POINTER(ctypes.c_ulong))[1] if fs else 0   # XFontStruct: ext_data, fid, ...
            m = re.match(r"(\d+)x(\d+)", name if fs else "6x13")
            cw, ch = (int(m.group(1)), int(m.group(2))) if m else (6, 13)
            self.fonts[name] = (fid, cw, ch - 2)
        return self.fonts[name]

    def fg(self, rgb: int):
        self.X.XSetForeground(self.dpy, self.gc, rgb)

    def bg(self, rgb: int):
        self.X.XSetBackground(self.dpy, self.gc, rgb)

    def fill(self, d, x, y, w, h, rgb):
        self.fg(rgb)
        self.X.XFillRectangle(self.dpy, d, self.gc, x, y, w, h)

    def frame(self, d, x, y, w, h, rgb):
        self.fg(rgb)
        self.X.XDrawRectangle(self.dpy, d, self.gc, x, y, w - 1, h - 1)

    def text(self, d, x, y, s: str, rgb, font="6x13", bg=None):
        fid, _, asc = self.font(font)
        if fid:
            self.X.XSetFont(self.dpy, self.gc, fid)
        self.fg(rgb)
        b = s.encode("latin-1", "replace")
        if bg is None:
            self.X.XDrawString(self.dpy, d, self.gc, x, y + asc, b, len(b))
        else:
            self.bg(bg)
            self.X.XDrawImageString(self.dpy, d, self.gc, x, y + asc, b, len(b))

    def copy(self, src, dst, sx, sy, w, h, dx, dy):
        self.X.XCopyArea(self.dpy, src, dst, self.gc, sx, sy, w, h, dx, dy)

    def pixmap(self, w=W, h=H_) -> int:
        return self.X.XCreatePixmap(self.dpy, self.root, w, h, self.depth)

    def load_bgra(self, path: Path, w=W, h=H_) -> int:
        """A server-side pixmap holding a raw BGRA image (ImageMagick's BGRA: output; the X server is
        24-bit TrueColor, 32 bits per pixel, LSBFirst: the same bytes)."""
        data = path.read_bytes()
        assert len(data) == w * h * 4, f"{path}: {len(data)} bytes, expected {w * h * 4}"
        buf = ctypes.create_string_buffer(data, len(data))
        self._keep.append(buf)
        img = self.X.XCreateImage(self.dpy, self.visual, self.depth, 2, 0, buf, w, h, 32, w * 4)  # 2 = ZPixmap
        pm = self.pixmap(w, h)
        self.X.XPutImage(self.dpy, pm, self.gc, img, 0, 0, 0, 0, w, h)
        return pm

    def sync(self):
        self.X.XSync(self.dpy, 0)


WORDS = ("the gateway records every session and relays the desktop of the asset to the user while an auditor "
         "may watch it live later replay it seek to any minute export it as video and find who changed what on "
         "which server at what time configuration deploy rollback database backup certificate renewal firewall "
         "rule user account password rotation kernel update disk space log rotation monitoring alert ticket").split()


class Activity:
    """The scripted 60 s: 240 steps, one every 250 ms. Deterministic (fixed seed, fixed images).

      0.00 s        full screen: photo wallpaper + an editor window
      0.25–12 s     typing into the editor (2 characters per step) and a status-bar clock every 2 s
      12–24 s       a terminal window scrolling a log, 2 new lines per step
      24–34 s       a dialog window dragged across the desktop (18 px right, 8 px up per step)
      34 s          full screen: a dashboard with bar charts; a live counter and one bar change per step
      36.5 s        full screen: a text document; 37–39.5 s it scrolls, 12 px per step (nearly all the
                    screen changes every step)
      39.5 s        full screen: the photo wallpaper, a browser-like window; a progress bar per step
      42 s          full screen: the dashboard again with other numbers; its counter per step
      44 s          full screen: the final picture (the e2e tests' asset picture plus a yellow box)
      44.25–60 s    quiet: nothing changes
    """

    def __init__(self, x: Xlib, frames: Path, seed: int = 20261125):
        self.x = x
        self.rng = random.Random(seed)
        self.root = x.root
        self.img = {name: x.load_bgra(frames / f"{name}.bgra") for name in ("photo", "chart", "chart2", "final")}
        self.backdrop = x.pixmap()
        self.doc = x.pixmap(W, H_ + 12 * 12)      # the document, taller than the screen (it scrolls)
        self._draw_document()
        self.typed = self._typing_text()
        self.cursor = (0, 0)
        self.painted: list[int] = []              # pixels painted per step (sum of rectangle areas)
        self.area = 0
        self.drag = None

    # ---- helpers that also count painted area

    def _fill(self, x0, y0, w, h, rgb, d=None):
        self.x.fill(self.root if d is None else d, x0, y0, w, h, rgb)
        if d is None:
            self.area += w * h

    def _text(self, x0, y0, s, rgb, font="6x13", bg=None):
        self.x.text(self.root, x0, y0, s, rgb, font, bg)
        _, cw, asc = self.x.font(font)
        self.area += cw * len(s) * (asc + 2)

    def _copy(self, src, sx, sy, w, h, dx, dy):
        self.x.copy(src, self.root, sx, sy, w, h, dx, dy)
        self.area += w * h

    def _window(self, x0, y0, w, h, title, body=0xFFFFFF, bar=0x2B4C7E):
        self._fill(x0 - 1, y0 - 1, w + 2, h + 2, 0x1A1A1A)
        self._fill(x0, y0, w, 24, bar)
        self._text(x0 + 8, y0 + 5, title, 0xFFFFFF, "7x13bold")
        for i, c in enumerate((0xE05050, 0xE0C050, 0x50B050)):
            self._fill(x0 + w - 60 + i * 18, y0 + 7, 10, 10, c)
        self._fill(x0, y0 + 24, w, h - 24, body)

    def _line(self, rng: random.Random, n: int) -> str:
        out = []
        while len(" ".join(out)) < n:
            out.append(rng.choice(WORDS))
        return " ".join(out)[:n]

    def _typing_text(self) -> str:
        rng = random.Random(7)
        lines = [self._line(rng, rng.randint(40, 88)) for _ in range(12)]
        return "\n".join(lines)

    def _draw_document(self):
        x, d = self.x, self.doc
        x.fill(d, 0, 0, W, H_ + 144, 0xFFFFFF)
        x.fill(d, 0, 0, W, 40, 0xEEF1F5)
        x.text(d, 24, 12, "Runbook: certificate renewal for the web tier", 0x203040, "9x15bold")
        rng = random.Random(11)
        y = 56
        while y < H_ + 144 - 16:
            if rng.random() < 0.12:
                y += 8
                x.text(d, 24, y, self._line(rng, rng.randint(20, 50)).capitalize(), 0x1F4E8C, "9x15bold")
                y += 22
            else:
                x.text(d, 24, y, self._line(rng, rng.randint(60, 106)), 0x222222, "9x15")
                y += 17

    # ---- the script

    def step(self, k: int):
        self.area = 0
        rng = self.rng
        if k == 0:
            self._copy(self.img["photo"], 0, 0, W, H_, 0, 0)
            self._window(48, 40, 600, 440, "notes.txt - editor")
            self._fill(48, 456, 600, 24, 0xE8E8E8)
            self.cursor = (0, 0)
            self.typed_pos = 0
        elif 1 <= k < 48:                                         # typing
            for _ in range(2):
                if self.typed_pos >= len(self.typed):
                    break
                ch = self.typed[self.typed_pos]
                self.typed_pos += 1
                col, row = self.cursor
                if ch == "\n" or col >= 96:
                    self._fill(56 + col * 6, 72 + row * 15, 6, 13, 0xFFFFFF)   # erase the cursor
                    self.cursor = (0, row + 1)
                    if ch == "\n":
                        continue
                    col, row = self.cursor
                self._text(56 + col * 6, 72 + row * 15, ch, 0x111111, "6x13", bg=0xFFFFFF)
                self.cursor = (col + 1, row)
            col, row = self.cursor
            self._fill(56 + col * 6, 72 + row * 15, 6, 13, 0x3050C0)           # the cursor
            if k % 8 == 0:
                self._text(56, 462, f"Ln {row + 1}, Col {col + 1}   {k * TICK:5.1f} s   UTF-8   saved", 0x333333, "6x13", bg=0xE8E8E8)
        elif k == 48:                                             # terminal appears
            self._window(260, 300, 720, 420, "admin@web01: ~ (ssh)", body=0x101010, bar=0x3A3A3A)
            self.term_lines = 0
        elif 48 < k < 96:                                         # terminal scrolls
            bx, by, bw, bh = 264, 328, 712, 388
            self._copy(self.root, bx, by + 26, bw, bh - 26, bx, by)
            self._fill(bx, by + bh - 26, bw, 26, 0x101010)
            for i in range(2):
                self.term_lines += 1
                t = f"2026-11-25 10:{self.term_lines // 60:02d}:{self.term_lines % 60:02d}.{rng.randint(0, 999):03d}"
                lvl = rng.choice(("INFO ", "INFO ", "INFO ", "DEBUG", "WARN "))
                msg = f"{t} {lvl} worker-{rng.randint(1, 8)} {self._line(rng, rng.randint(30, 80))}"
                self._text(bx + 4, by + bh - 26 + i * 13, msg[:118], 0x8FD18F if lvl != "WARN " else 0xE0C060, "6x13")
        elif k == 96:                                             # a dialog to drag around
            self.x.copy(self.root, self.backdrop, 0, 0, W, H_, 0, 0)
            self.drag = (40, 520)
            self._dialog(*self.drag)
        elif 96 < k < 136:
            ox, oy = self.drag
            nx, ny = ox + 18, oy - 8
            self._copy(self.backdrop, ox - 1, oy - 1, 322, 202, ox - 1, oy - 1)
            self._dialog(nx, ny)
            self.drag = (nx, ny)
        elif k == 136 or k == 168:                                # dashboard
            self._copy(self.img["chart" if k == 136 else "chart2"], 0, 0, W, H_, 0, 0)
            self._counter(k)
        elif 136 < k < 146 or 168 < k < 176:
            self._counter(k)
            bar = k % 12
            h = 40 + rng.randint(0, 260)
            self._fill(80 + bar * 74, 160, 45, 421, 0xF7F9FB)
            self._fill(80 + bar * 74, 580 - h, 45, h + 1, 0x3D7DCA if k < 168 else 0x2EA36B)
        elif k == 146:                                            # document
            self.doc_y = 0
            self._copy(self.doc, 0, 0, W, H_, 0, 0)
        elif 146 < k < 158:
            if 148 <= k < 158:
                self.doc_y += 12
                self._copy(self.doc, 0, self.doc_y, W, H_, 0, 0)
        elif k == 158:                                            # photo + browser-like window
            self._copy(self.img["photo"], 0, 0, W, H_, 0, 0)
            self._window(120, 90, 780, 560, "Monitoring - Firefox", body=0xF4F4F4)
            self._fill(140, 130, 740, 28, 0xFFFFFF)
            self._text(150, 137, "https://grafana.internal/d/web-tier?orgId=1&refresh=5s", 0x444444, "7x13")
            self.progress = 0
        elif 158 < k < 168:
            self.progress += 1
            self._fill(140, 170, 74 * self.progress, 6, 0x3D7DCA)
            self._text(150, 190 + 16 * self.progress, self._line(rng, 100), 0x222222, "7x13")
        elif k == 176:                                            # the final picture, then quiet
            self._copy(self.img["final"], 0, 0, W, H_, 0, 0)
        self.painted.append(self.area)

    def _dialog(self, x0, y0):
        self._window(x0, y0, 320, 200, "Confirm restart", body=0xF0F0F0)
        self._text(x0 + 16, y0 + 44, "Restart nginx on web01 and web02?", 0x111111, "7x13")
        self._text(x0 + 16, y0 + 64, "Active connections will be drained.", 0x555555, "7x13")
        self._fill(x0 + 160, y0 + 150, 70, 28, 0x2B6CC4)
        self._text(x0 + 170, y0 + 157, "Restart", 0xFFFFFF, "7x13bold")
        self._fill(x0 + 240, y0 + 150, 64, 28, 0xDDDDDD)
        self._text(x0 + 250, y0 + 157, "Cancel", 0x111111, "7x13bold")

    def _counter(self, k):
        self._fill(760, 70, 240, 40, 0x24476B)
        self._text(770, 82, f"req/s {12000 + (k * 7919) % 5000:6d}  p99 {20 + (k * 31) % 70:3d} ms", 0xFFFFFF, "7x13bold")


# Where the gateway's time goes, by inclusive time (the function and everything it calls), for the profile.
INCLUSIVE = (
    ("recorder", r"^DesktopRecorder\.encodePending\("),
    ("tiles", r"DesktopRecorder\.appendTiles\("),
    ("keyframes", r"^DesktopRecorder\.writeKeyframe\("),
    ("compare", r"DesktopRecorder\.updateScreen\("),
    ("zlib", r"^compress2$"),
    ("capture", r"^DesktopRecorder\.frame\("),
    ("user leg", r"^peer_thread_main$"),
    ("planar", r"^freerdp_bitmap_compress_planar$"),
    ("bulk", r"^xcrush_compress$"),
    ("tls write", r"^SSL_write$"),
    ("asset leg", r"^target_thread_main$"),
    ("decode planar", r"^planar_decompress$"),
    ("bulk decode", r"^xcrush_decompress$"),
    ("tls read", r"^SSL_read$"),
)


def painter_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rdp_desktop.py --painter")
    ap.add_argument("--painter", action="store_true")
    ap.add_argument("--frames", type=Path, required=True)
    ap.add_argument("--reset", help="paint this frame (name of a .bgra in --frames) full screen and exit")
    ap.add_argument("--ticks", type=int, default=TICKS)
    a = ap.parse_args(argv)
    x = Xlib()
    if a.reset:
        pm = x.load_bgra(a.frames / f"{a.reset}.bgra")
        x.copy(pm, x.root, 0, 0, W, H_, 0, 0)
        x.sync()
        return 0
    act = Activity(x, a.frames)
    x.sync()
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    late = []
    for k in range(a.ticks):
        due = t0 + k * TICK
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        late.append(time.monotonic() - due)
        act.step(k)
        x.sync()
    end = t0 + a.ticks * TICK
    if time.monotonic() < end:
        time.sleep(end - time.monotonic())
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": time.monotonic() - t0, "painted": act.painted, "late_max_s": max(late),
                      "late_p50_s": sorted(late)[len(late) // 2],
                      "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)}), flush=True)
    return 0


def make_frames(d: Path) -> None:
    """The full-screen pictures the activity uses, as raw BGRA (deterministic: fixed seed and draws)."""
    d.mkdir(parents=True, exist_ok=True)

    def im(name: str, *args: str):
        png = d / f"{name}.png"
        subprocess.run(["convert", *args, str(png)], check=True, timeout=120, capture_output=True)
        subprocess.run(["convert", str(png), "-depth", "8", f"BGRA:{d / (name + '.bgra')}"], check=True, timeout=60,
                       capture_output=True)

    # a photo-like wallpaper: plasma fractal (seeded), softened
    im("photo", "-size", f"{W}x{H_}", "-seed", "4242", "plasma:#2d5f8a-#c9a24a", "-blur", "0x1.2")
    for name, seed, colour in (("chart", 3, "#3d7dca"), ("chart2", 5, "#2ea36b")):
        rng = random.Random(seed)
        draws = ["-fill", "#24476b", "-draw", f"rectangle 0,0 {W},56", "-fill", "#f7f9fb", "-draw", f"rectangle 40,120 {W - 40},{H_ - 60}"]
        draws += ["-stroke", "#dde3ea"] + sum((["-draw", f"line 60,{y} {W - 60},{y}"] for y in range(160, 600, 60)), [])
        draws += ["-stroke", "none", "-fill", colour]
        for i in range(12):
            h = rng.randint(60, 400)
            draws += ["-draw", f"rectangle {80 + i * 74},{580 - h} {124 + i * 74},580"]
        draws += ["-fill", "#e8edf3", "-draw", f"rectangle 40,{H_ - 50} {W - 40},{H_ - 10}"]
        im(name, "-size", f"{W}x{H_}", "gradient:#eef2f7-#ffffff", *draws)
    l, t, r, b = FINAL_BOX
    im("final", "-size", f"{W}x{H_}", "xc:#3366cc", "-fill", "#ff8800", "-draw", "rectangle 100,100 400,300",
       "-fill", "#22aa44", "-draw", "circle 700,500 800,500", "-fill", "#%02x%02x%02x" % YELLOW, "-draw", f"rectangle {l},{t} {r},{b}")
    im("start", "-size", f"{W}x{H_}", "xc:#3366cc", "-fill", "#ff8800", "-draw", "rectangle 100,100 400,300",
       "-fill", "#22aa44", "-draw", "circle 700,500 800,500")



# ============================================================================================
# The benchmark
# ============================================================================================


def _load(name: str, path: Path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


S = H = CS = R = None   # sftp_throughput.py, benchmarks/run, console_scale.py, Tests/e2e/rdp.py (loaded in main)
log = print


def load_helpers() -> None:
    global S, H, CS, R, log
    S = _load("gatehouse_bench_sftp", BENCH_DIR / "sftp_throughput.py")
    H, CS = S.H, S.CS
    log = H.log
    sys.path.insert(0, str(E2E_DIR))
    import rdp  # noqa: PLC0415 - Tests/e2e/rdp.py (imports the e2e conftest: pytest, pexpect)
    R = rdp


def med(xs):
    xs = [x for x in xs if x is not None]
    return H.med(xs) if xs else None


def rng(xs, nd=2):
    xs = [x for x in xs if x is not None]
    return H.fmt_range(xs, nd) if xs else "–"


def mb(n) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}"


def tcp_bytes(port: int) -> dict[str, tuple[int, int]]:
    """Established TCP sockets whose local port is `port`: {peer address: (bytes_acked, bytes_received)}
    from `ss -ti` (bytes this end sent and the peer acknowledged; bytes it received)."""
    p = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True,
                       timeout=20)
    out, peer = {}, None
    for line in p.stdout.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            parts = line.split()
            peer = parts[-1] if len(parts) >= 2 else None
            rest = ""
        else:
            rest = line
        if peer and rest:
            a = re.search(r"bytes_acked:(\d+)", rest)
            r_ = re.search(r"bytes_received:(\d+)", rest)
            out[peer] = (int(a.group(1)) if a else 0, int(r_.group(1)) if r_ else 0)
    return out


def tcp_delta(before: dict, after: dict) -> tuple[int, int]:
    """(sent, received) by the sockets present in both snapshots."""
    sent = sum(after[k][0] - before[k][0] for k in after if k in before)
    recv = sum(after[k][1] - before[k][1] for k in after if k in before)
    return sent, recv


def rss_anon(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def gdr_stats(path: Path) -> dict:
    """Bytes and counts by record type of a .gdr (docs/desktop-recording.md)."""
    names = {1: "resize", 2: "tile", 3: "keyframe", 4: "pointer", 5: "event", 6: "end"}
    data = path.read_bytes()
    nl = data.find(b"\n")
    st = {"header": nl + 1}
    i = nl + 1
    while i + 9 <= len(data):
        t = data[i]
        n = int.from_bytes(data[i + 1:i + 5], "little")
        k = names.get(t, f"type{t}")
        c = st.setdefault(k, [0, 0])
        c[0] += 1
        c[1] += 9 + n
        i += 9 + n
    st["size"] = len(data)
    return st


def rdp_gateway(*args):
    """benchmarks/run's Gateway (process handling, ulimit, log) with an RDP config: asset desk01 (the shadow
    server, stored account password), user alice (password, granted desk01), admin adam (for the API token).
    A factory because benchmarks/run is only loaded in main()."""

    class RdpGateway(H.Gateway):
        def __init__(self, binary: Path, workdir: Path, asset_port: int, hashes: dict, secret: Path, tls: Path, nofile: int):
            super().__init__(binary, workdir, 0, 0, 0, "ssh-ed25519 AAAA-unused", workdir / "unused", nofile)
            self.rdp_port, self.web_port = H.free_port(), H.free_port()
            q = json.dumps
            self.config.write_text(f"""data_dir: var
listen: {{ ssh: "127.0.0.1:{self.port}", web: "127.0.0.1:{self.web_port}", rdp: "127.0.0.1:{self.rdp_port}" }}
rdp: {{ certificate: {q(str(tls / 'rdp.crt'))}, private_key: {q(str(tls / 'rdp.key'))} }}
users:
  - name: alice
    password_hash: {q(hashes['alice'])}
  - name: adam
    password_hash: {q(hashes['adam'])}
    role: admin
assets:
  - name: desk01
    host: 127.0.0.1
    rdp_port: {asset_port}
    accounts:
      - name: {q(R.ASSET_USER)}
        password_file: {q(str(secret))}
grants:
  - users: [alice]
    assets: [desk01]
""")

        def start(self, timeout: float = 60):
            at = H.file_size(self.log_path)
            super().start(timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = H.read_tail(self.log_path, at, 2000)
                if "listening on rdp" in text and "listening on web" in text:
                    return self
                if not self.alive():
                    break
                time.sleep(0.05)
            raise RuntimeError(f"gateway: no rdp/web listener:\n{H.read_tail(self.log_path, at)}")

        def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
            return subprocess.run([str(self.binary), *args, "--config", str(self.config)], cwd=self.dir,
                                  capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

        def api(self, path: str, token: str):
            req = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}",
                                         headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=15) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(errors="replace")

    return RdpGateway(*args)


class RdpBench:
    def __init__(self, a):
        self.a = a
        self.tmp = Path(tempfile.mkdtemp(prefix="gatehouse-bench-rdp-"))
        self.asset = None
        self.gw = None
        self.users = []
        self.token = None
        self.results = {"runs": [], "failures": [], "notes": [], "profile": None}
        self.seq = 0

    # ---- setup

    def setup(self):
        a = self.a
        log(f"work dir {self.tmp}")
        self.frames = self.tmp / "frames"
        make_frames(self.frames)
        self.asset = R.ShadowAsset(self.tmp / "asset")
        self.asset.start()
        log(f"asset: freerdp-shadow-cli :{self.asset.port} (pid {self.asset.proc.pid}) on Xvfb {self.asset.display.display}")
        tls = self.tmp / "tls"
        tls.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls / "rdp.key"),
                        "-out", str(tls / "rdp.crt"), "-days", "2", "-subj", "/CN=gatehouse-bench"],
                       check=True, capture_output=True, timeout=60)
        secret = tls / "rdpuser.password"
        secret.write_text(R.ASSET_PASSWORD + "\n")
        secret.chmod(0o600)
        hashes = {}
        for u, pw in (("alice", ALICE_PASSWORD), ("adam", ADAM_PASSWORD)):
            p = subprocess.run([str(a.gatehouse_bin), "hash-password", "--password", pw], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
            lines = [l.strip() for l in p.stdout.splitlines() if l.strip()]
            if p.returncode != 0 or not lines or not lines[-1].startswith("$argon2"):
                raise RuntimeError(f"hash-password failed: {p.stdout} {p.stderr}")
            hashes[u] = lines[-1]
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.gw = rdp_gateway(a.gatehouse_bin, self.tmp / "gateway", self.asset.port, hashes, secret, tls, soft)
        self.gw.start()
        p = self.gw.cli("token", "create", "--user", "adam")
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"gatehouse token create failed: {p.stdout[-300:]} {p.stderr[-300:]}")
        self.token = lines[-1].strip()
        log(f"gateway :{self.gw.rdp_port} (rdp), :{self.gw.web_port} (web), pid {self.gw.proc.pid}")
        self.results["rss_start_kib"] = S.vm_rss(self.gw.proc.pid)
        self.results["anon_start_kib"] = rss_anon(self.gw.proc.pid)

    # ---- helpers

    def paint(self, frame: str):
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--painter", "--frames", str(self.frames), "--reset", frame],
                       env=self.asset.display.env(), check=True, capture_output=True, timeout=60)

    def user(self, name: str):
        u = R.RDPUser(self.tmp / "users", name)
        self.users.append(u)
        return u

    def connect(self, u, setup: str):
        if setup == "direct":
            port, login, pw, sec = self.asset.port, R.ASSET_USER, R.ASSET_PASSWORD, "nla"
        else:
            port, login, pw, sec = self.gw.rdp_port, "alice#desk01", ALICE_PASSWORD, "tls"
        logf = open(u.log_path, "ab")
        u.proc = subprocess.Popen(
            ["xfreerdp", f"/v:127.0.0.1:{port}", f"/u:{login}", f"/p:{pw}", "/cert:ignore", f"/sec:{sec}",
             "/size:1024x768", "/bpp:32", "-gfx"],
            env=u.display.env(), stdout=logf, stderr=logf, start_new_session=True)
        logf.close()

    def gw_idle(self, timeout: float = 30.0) -> tuple[float, float]:
        """Waits until the gateway uses ≤ 0.02 CPU s over 0.3 s; (seconds waited, CPU s it used meanwhile)."""
        pid = self.gw.proc.pid
        t0, c00 = time.monotonic(), S.proc_cpu(pid) or 0
        while time.monotonic() - t0 < timeout:
            c0 = S.proc_cpu(pid)
            time.sleep(0.3)
            c1 = S.proc_cpu(pid)
            if c0 is None or c1 is None or c1 - c0 <= 0.02:
                break
        return time.monotonic() - t0, (S.proc_cpu(pid) or 0) - c00

    def online_session(self, timeout: float = 20) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, page = self.gw.api("/api/v1/sessions?protocol=rdp&state=online", self.token)
            if st == 200 and page.get("sessions"):
                return page["sessions"][0]
            time.sleep(0.2)
        return None

    def snap(self, u, setup: str) -> dict:
        pids = {"gateway": self.gw.proc.pid, "client": u.proc.pid, "client_x": u.display.proc.pid,
                "asset_rdp": self.asset.proc.pid, "asset_x": self.asset.display.proc.pid}
        return {"t": time.monotonic(), "cpu": {k: S.proc_cpu(p) for k, p in pids.items()},
                "threads": S.thread_cpu(self.gw.proc.pid), "machine": S.machine_cpu(),
                "user_leg": tcp_bytes(self.gw.rdp_port if setup == "gatehouse" else self.asset.port),
                "asset_leg": tcp_bytes(self.asset.port), "rss": S.vm_rss(self.gw.proc.pid)}

    def check_screen(self, u, tag: str) -> dict:
        """The user's screen against the asset's: the probes (the e2e tests' three plus the final yellow
        box) and the share of pixels that differ by more than 10 % (ImageMagick compare -fuzz)."""
        d = self.tmp / "screens"
        d.mkdir(exist_ok=True)
        up, ap_ = d / f"{tag}-user.png", d / f"{tag}-asset.png"
        u.display.screenshot(up)
        self.asset.display.screenshot(ap_)
        crop = d / f"{tag}-user-crop.png"
        subprocess.run(["convert", str(up), "-crop", f"{W}x{H_}+0+0", "+repage", str(crop)], check=True, timeout=60,
                       capture_output=True)
        wrong = {}
        for (x, y), colour in list(R.PROBES.items()) + [FINAL_PROBE]:
            got = R.pixel(crop, x, y)
            if not R.close_to(got, colour):
                wrong[f"{x},{y}"] = got
        p = subprocess.run(["compare", "-metric", "AE", "-fuzz", "10%", str(crop), str(ap_), "null:"], capture_output=True,
                           text=True, timeout=60)
        try:
            diff = int(float(p.stderr.strip().split()[0]))
        except (ValueError, IndexError):
            diff = None
        ok = not wrong and diff is not None and diff <= 0.001 * W * H_
        if ok and not self.a.keep:
            for f in (up, ap_, crop):
                f.unlink(missing_ok=True)
        return {"ok": ok, "wrong_probes": wrong, "diff_pixels": diff}

    # ---- one session

    def run_once(self, setup: str, rnd: int, profile: bool = False) -> dict:
        a = self.a
        self.seq += 1
        tag = f"{self.seq:02d}-{setup}"
        r = {"setup": setup, "round": rnd, "profiled": profile}
        self.paint("start")
        u = self.user(tag)
        since = H.file_size(self.gw.log_path)
        painter = None
        perf = None
        try:
            t_conn = time.monotonic()
            self.connect(u, setup)
            wrong = u.wait_for_screen(self.tmp / "screens-first.png", timeout=40)
            if wrong:
                raise RuntimeError(f"the user's screen never showed the asset's picture: {wrong}; xfreerdp log: "
                                   f"{u.log_text()[-600:]}")
            r["connect_s"] = time.monotonic() - t_conn
            sess = None
            if setup == "gatehouse":
                sess = self.online_session()
                if not sess:
                    raise RuntimeError("no online RDP session in the API")
                r["session"] = sess["id"]
            time.sleep(a.settle)
            painter = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--painter", "--frames", str(self.frames)],
                                       env=self.asset.display.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, start_new_session=True)
            ready, _, _ = select.select([painter.stdout], [], [], 30)
            if not ready or painter.stdout.readline().strip() != "READY":
                raise RuntimeError(f"painter not ready: {painter.stderr.read()[-500:] if painter.poll() is not None else ''}")
            if profile:
                perf_data = self.tmp / "perf.data"
                perf_err = open(self.tmp / "perf.err", "ab")
                cg = ["-g"] if a.call_graph == "fp" else ["--call-graph", a.call_graph]
                perf = H.PROCS.spawn(["perf", "record", *cg, "-F", str(a.perf_freq), "-p", str(self.gw.proc.pid),
                                      "-o", str(perf_data)], stdout=perf_err, stderr=perf_err)
                perf_err.close()
                time.sleep(0.5)
            s0 = self.snap(u, setup)
            painter.stdin.write("GO\n")
            painter.stdin.flush()
            out, err = painter.communicate(timeout=DURATION + 30)
            s1 = self.snap(u, setup)
            if perf is not None:
                os.kill(perf.pid, signal.SIGINT)
                try:
                    perf.wait(60)
                except subprocess.TimeoutExpired:
                    H.PROCS.stop(perf, 1.0)
                if perf in H.PROCS.started:
                    H.PROCS.started.remove(perf)
                r["perf_data"] = str(perf_data)
            if painter.returncode != 0:
                raise RuntimeError(f"painter failed rc={painter.returncode}: {err[-500:]}")
            pt = json.loads(out.strip().splitlines()[-1])
            r["painter"] = {k: v for k, v in pt.items() if k != "painted"}
            self.results.setdefault("painted", pt["painted"])
            win = s1["t"] - s0["t"]
            r["window_s"] = win
            per_min = 60.0 / win
            r["cpu_per_min"] = {k: (s1["cpu"][k] - s0["cpu"][k]) * per_min for k in s0["cpu"]
                                if s0["cpu"][k] is not None and s1["cpu"][k] is not None}
            r["painter_cpu_per_min"] = pt["cpu_s"] * per_min
            r["machine_cpu_per_min"] = (s1["machine"][0] - s0["machine"][0]) / os.sysconf("SC_CLK_TCK") * per_min
            r["machine_busy"] = (s1["machine"][0] - s0["machine"][0]) / max(1, s1["machine"][1] - s0["machine"][1])
            r["gw_threads_per_min"] = {k: v * per_min for k, v in S.thread_cpu_delta(s0["threads"], s1["threads"]).items()}
            sent, _ = tcp_delta(s0["user_leg"], s1["user_leg"])
            r["to_user_bytes_per_min"] = sent * per_min
            asent, _ = tcp_delta(s0["asset_leg"], s1["asset_leg"])
            r["from_asset_bytes_per_min"] = asent * per_min
            r["gw_rss_kib"] = s1["rss"]
            r["screen"] = self.check_screen(u, tag)
            # end the session: xfreerdp goes, the gateway closes the recording and the record
            t_end = time.monotonic()
            u.stop()
            if setup == "gatehouse":
                deadline = time.monotonic() + 30
                detail = None
                while time.monotonic() < deadline:
                    st, detail = self.gw.api(f"/api/v1/sessions/{r['session']}", self.token)
                    if st == 200 and detail.get("state") != "online":
                        break
                    time.sleep(0.2)
                r["ended_after_s"] = time.monotonic() - t_end
                waited, _ = self.gw_idle()
                r["rss_after_kib"] = S.vm_rss(self.gw.proc.pid)
                r["after_cpu_s"] = (S.proc_cpu(self.gw.proc.pid) or 0) - (s1["cpu"]["gateway"] or 0)
                r["idle_wait_s"] = waited
                st, detail = self.gw.api(f"/api/v1/sessions/{r['session']}", self.token)
                if st == 200:
                    r["api"] = {k: detail.get(k) for k in ("state", "bytes_in", "bytes_out", "duration_seconds", "started",
                                                           "ended", "reason")}
                recs = list((self.gw.dir / "var" / "recordings").rglob(f"{r['session']}.gdr*"))
                if recs:
                    r["recording"] = str(recs[0])
                    r["gdr"] = gdr_stats(recs[0]) if recs[0].suffix == ".gdr" else {"size": recs[0].stat().st_size}
                else:
                    r["recording"] = None
            else:
                time.sleep(0.5)
            text = H.read_tail(self.gw.log_path, since, 10 ** 6)
            bad = [l for l in text.splitlines() if re.search(r"\b(error|warning|critical)\b", l)]
            if bad:
                r["log_errors"] = len(bad)
                r["log_digest"] = H.log_digest(self.gw.log_path, since)
        finally:
            if painter is not None and painter.poll() is None:
                painter.kill()
                painter.wait(5)
            if perf is not None and perf.poll() is None:
                H.PROCS.stop(perf, 1.0)
            u.stop()
        return r

    def failure(self, what: str, detail: str):
        self.results["failures"].append({"what": what, "detail": detail, "gateway_alive": self.gw.alive()})
        log(f"FAILURE: {what}: {detail}")
        if not self.gw.alive():
            log("restarting the gateway")
            self.gw.proc = None
            self.gw.start()

    # ---- the rounds

    def go(self):
        a = self.a
        for rnd in range(a.rounds):
            order = list(SETUPS) if rnd % 2 == 0 else list(reversed(SETUPS))
            for setup in order:
                try:
                    r = self.run_once(setup, rnd)
                except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as e:
                    self.failure(f"{SETUP_LABEL[setup]}, round {rnd + 1}", str(e))
                    self.results["runs"].append({"setup": setup, "round": rnd, "error": str(e)})
                    continue
                self.results["runs"].append(r)
                c = r["cpu_per_min"]
                log(f"round {rnd + 1}/{a.rounds} {SETUP_LABEL[setup]:13} CPU s/min: gateway {c['gateway']:.2f}, xfreerdp "
                    f"{c['client']:.2f}, shadow {c['asset_rdp']:.2f}, user Xvfb {c['client_x']:.2f}, asset Xvfb {c['asset_x']:.2f}; "
                    f"to user {r['to_user_bytes_per_min'] / 1e6:.1f} MB/min"
                    + (f"; recording {r['gdr']['size'] / 1e6:.2f} MB" if r.get("gdr") else "")
                    + f"; screen {'OK' if r['screen']['ok'] else 'MISMATCH ' + str(r['screen'])}"
                    + (f" ⚠ {r['log_errors']} error/warning log lines" if r.get("log_errors") else ""))
                if not r["screen"]["ok"]:
                    self.results["failures"].append({"what": f"{SETUP_LABEL[setup]}, round {rnd + 1}: screen mismatch",
                                                     "detail": json.dumps(r["screen"]), "gateway_alive": self.gw.alive()})
        if a.profile:
            if not shutil.which("perf"):
                self.results["notes"].append("perf not installed: no CPU profile")
            else:
                try:
                    r = self.run_once("gatehouse", -1, profile=True)
                    self.results["profile"] = self.perf_report(Path(r["perf_data"]), r)
                    self.results["profile_rss_kib"] = r.get("rss_after_kib")
                except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as e:
                    self.failure("profiled run", str(e))
        self.gw_idle()
        self.results["rss_end_kib"] = S.vm_rss(self.gw.proc.pid)
        self.results["anon_end_kib"] = rss_anon(self.gw.proc.pid)
        if shutil.which("gdb"):
            # how much of what the sessions left behind the allocator could give back: free but
            # retained by malloc (trimmed) versus still allocated (not)
            try:
                rc, out, err, _ = H.run(["gdb", "-p", str(self.gw.proc.pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
                                        timeout=120)
                time.sleep(0.5)
                if rc == 0 and re.search(r"^\$1 = ", out.decode(errors="replace"), re.M):
                    self.results["anon_trimmed_kib"] = rss_anon(self.gw.proc.pid)
                    self.results["rss_trimmed_kib"] = S.vm_rss(self.gw.proc.pid)
                else:
                    self.results["notes"].append(f"gdb could not call malloc_trim in the gateway (rc {rc}): "
                                                 f"{err.decode(errors='replace')[-200:]}")
            except RuntimeError as e:
                self.results["notes"].append(f"gdb malloc_trim: {e}")
        self.results["log_errors"] = sum(1 for l in H.read_tail(self.gw.log_path, 0, 10 ** 7).splitlines()
                                         if re.search(r"\b(error|warning|critical)\b", l))
        self.results["log_digest"] = H.log_digest(self.gw.log_path, 0, last=5)
        self.results["shadow_log_tail"] = self.asset.log_text()[-2000:]

    def perf_report(self, data: Path, run: dict) -> dict:
        perf = shutil.which("perf")
        swift = shutil.which("swift")

        def report(*args, limit=None) -> str:
            argv = [perf, "report", "-i", str(data), "--stdio", *args]
            if limit:
                argv += ["--percent-limit", str(limit)]
            rc, out, err, _ = H.run(argv, timeout=300)
            text = out.decode(errors="replace")
            if swift:
                rc2, out2, _, _ = H.run([swift, "demangle", "--simplified", "--compact"], input=text.encode(), timeout=120)
                if rc2 == 0:
                    text = out2.decode(errors="replace")
            return text

        rows_all = []
        for line in report("--no-children", "--sort", "dso,sym", "-g", "none", limit=0.1).splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*)$", line)
            if m:
                rows_all.append((float(m.group(1)), Path(m.group(2)).name, m.group(4).strip(), m.group(3) == "k"))
        dsos = []
        for line in report("--no-children", "--sort", "dso", "-g", "none").splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(\S+)\s*$", line)
            if m:
                dsos.append((float(m.group(1)), Path(m.group(2)).name.replace("[kernel.kallsyms]", "kernel")))
        comms = []
        for line in report("--no-children", "--sort", "comm", "-g", "none").splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(.+?)\s*$", line)
            if m:
                comms.append((float(m.group(1)), m.group(2)))
        comm_dso = []
        for line in report("--no-children", "--sort", "comm,dso", "-g", "none", limit=1).splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(\S+)\s*$", line)
            if m:
                comm_dso.append((float(m.group(1)), m.group(2), Path(m.group(3)).name.replace("[kernel.kallsyms]", "kernel")))
        # symbols a library has no symbol table for (e.g. zlib's internals): one line per library
        unresolved: dict[str, float] = {}
        for p_, d, sym, k in rows_all:
            if sym.startswith("0x"):
                unresolved[d] = unresolved.get(d, 0.0) + p_
        rows = [r for r in rows_all if not r[2].startswith("0x")]
        rows += [(p_, d, f"(no symbols: {d} internals)", False) for d, p_ in unresolved.items()]
        rows.sort(key=lambda r: -r[0])
        children: dict[str, float] = {}   # inclusive % by symbol name (entries of the same name summed)
        for line in report("--children", "--sort", "sym", "-g", "none", limit=0.3).splitlines():
            m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+\[([.k])\]\s+(.*)$", line)
            if m:
                children[m.group(4).strip()] = children.get(m.group(4).strip(), 0.0) + float(m.group(1))
        inclusive = {}
        for key, rx in INCLUSIVE:
            hits = [v for k, v in children.items() if re.search(rx, k)]
            if hits:
                inclusive[key] = max(hits)
        samples = None
        m = re.search(r"\((\d+) samples\)", (data.parent / "perf.err").read_text(errors="replace")
                      if (data.parent / "perf.err").exists() else "")
        if m:
            samples = int(m.group(1))
        if not self.a.keep:
            data.unlink(missing_ok=True)
        log("profile: " + ", ".join(f"{n} {p:.0f}%" for p, n in dsos[:5]) + "; top: "
            + "; ".join(f"{p:.1f}% {s_[:50]}" for p, _, s_, k in rows[:6]))
        return {"rows": rows[:40], "dsos": dsos[:10], "comms": comms[:10], "comm_dso": comm_dso[:16], "inclusive": inclusive,
                "samples": samples,
                "gw_cpu_per_min": run["cpu_per_min"]["gateway"], "call_graph": self.a.call_graph, "screen_ok": run["screen"]["ok"], "freq": self.a.perf_freq}

    def cleanup(self):
        for u in self.users:
            try:
                u.stop()
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        if self.gw is not None:
            self.gw.stop()
        if self.asset is not None:
            try:
                self.asset.stop()
            except Exception:  # noqa: BLE001
                pass
        H.PROCS.stop_all()
        if self.a.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# report


def activity_text(painted: list[int] | None) -> str:
    if not painted:
        return ""
    screen = W * H_
    steps = len(painted)
    full = sum(1 for p in painted if p >= 0.9 * screen)
    quiet = sum(1 for p in painted if p == 0)
    partial = steps - full - quiet
    part = sorted(p / screen for p in painted if 0 < p < 0.9 * screen)
    return (f"{steps} steps of {TICK * 1000:.0f} ms: {full} change ≥ 90 % of the screen, {partial} change part of it "
            f"(median {100 * part[len(part) // 2]:.1f} %, from {100 * part[0]:.2f} % to {100 * part[-1]:.0f} % of the "
            f"screen), {quiet} change nothing; {sum(painted) / screen:.0f} screens' worth of pixels painted in all")


def versions() -> dict:
    def dpkg(pkg):
        return H.sh(f"dpkg-query -W -f='${{Version}}' {pkg} 2>/dev/null") or "?"
    return {"freerdp": dpkg("freerdp2-x11"), "shadow": dpkg("freerdp2-shadow-x11"), "xvfb": dpkg("xvfb")}


def render(res: dict, info: dict, a) -> tuple[str, str]:
    runs = [r for r in res["runs"] if "error" not in r and r["screen"]["ok"]]
    by = {s: [r for r in runs if r["setup"] == s] for s in SETUPS}
    n_all = {s: sum(1 for r in res["runs"] if r["setup"] == s) for s in SETUPS}
    started = res["started"]
    v = res["versions"]
    L = [SECTION_TITLE, ""]
    L.append(f"`benchmarks/rdp_desktop.py` (run {started:%Y-%m-%d %H:%M %Z}; commit {info['commit']}, release binary built "
             f"{info['built']} (sha256 {info['sha']}…); {info['nproc']} CPUs ({info['cpu']}), shared and noisy, load average "
             f"at start {' '.join(info['load'])}; FreeRDP {v['freerdp']} (xfreerdp, freerdp-shadow-cli; the gateway links the "
             f"same libfreerdp2), Xvfb {v['xvfb']}).")
    if info.get("note"):
        L.append(f"({info['note']})")
    L.append("")
    L.append("**Method:** the asset is `freerdp-shadow-cli` (NLA) sharing an Xvfb display of 1024×768×24, the user "
             "`xfreerdp /size:1024x768 /bpp:32 -gfx` on its own Xvfb, as in the e2e tests (`Tests/e2e/rdp.py`). Setups: "
             "**direct** (xfreerdp → asset, NLA) and **via Gatehouse** (xfreerdp → gateway, TLS, `alice#desk01`; the gateway "
             "logs in to the asset with the stored account, decodes the asset's updates into its own framebuffer, sends "
             "changed 64×64 tiles to the user as planar bitmaps and records the desktop to a `.gdr`). After the user's "
             f"screen shows the asset and {a.settle:.0f} s of settling, a scripted activity runs on the asset's display for "
             f"{DURATION:.0f} s, drawn with Xlib by the benchmark's painter process (deterministic: fixed images and seeds; "
             f"{activity_text(res.get('painted'))}). In order: an editor being typed into (2 characters per step), a terminal "
             "scrolling a log (~36 % of the screen per step), a dialog dragged across the desktop, a dashboard with a "
             "changing bar and counter, a text document that scrolls (nearly the whole screen per step), a browser-like "
             "window filling, then the final picture and **16 s of quiet**. CPU = utime+stime from `/proc/PID/stat` over "
             "exactly that window, per session-minute; the gateway's own idle baseline (the same gateway, no session, over "
             "the same 60 s: measured during each direct run) is subtracted, round by round. Bytes on the wire = "
             "`bytes_acked` of the server-side TCP sockets (`ss -ti`) over the window, TLS included. Recording = the "
             "session's `.gdr` at the end (the whole session, connect to disconnect), per minute of session. "
             f"{a.rounds} round{'s' if a.rounds != 1 else ''}, direct and Gatehouse back to back, order alternating; median [min–max]. Only runs whose "
             "user screen matched the asset's at the end count.")
    L.append("")

    def cpu(s, k):
        return [r["cpu_per_min"].get(k) for r in by[s]]

    gw_idle = {r["round"]: r["cpu_per_min"]["gateway"] for r in by["direct"]}
    gw_net = [r["cpu_per_min"]["gateway"] - gw_idle.get(r["round"], med(list(gw_idle.values())) or 0.0) for r in by["gatehouse"]]

    def total(r, net=None):
        c = r["cpu_per_min"]
        return c["client"] + c["asset_rdp"] + (net if net is not None else 0.0)

    tot_d = [total(r) for r in by["direct"]]
    tot_g = [total(r, gn) for r, gn in zip(by["gatehouse"], gw_net)]

    def diff(g, d, nd=2):
        mg, md = med(g), med(d)
        if mg is None or md is None:
            return "–"
        d = mg - md if abs(mg - md) >= 0.5 * 10 ** -nd else 0.0
        return f"{d:+.{nd}f}" + (f" ({mg / md:.2f}×)" if md > 0.05 else "")

    L.append("| CPU seconds per session-minute | direct | via Gatehouse | Gatehouse − direct |")
    L.append("|---|---|---|---|")
    L.append(f"| **gateway** (`gatehouse serve`), net of its idle baseline | – | **{rng(gw_net)}** | {fmt2(med(gw_net))} |")
    L.append(f"| gateway idle baseline (no session; during the direct runs) | {rng(list(gw_idle.values()), 3)} | – | – |")
    L.append(f"| `xfreerdp` (the user's client) | {rng(cpu('direct', 'client'))} | {rng(cpu('gatehouse', 'client'))} | "
             f"{diff(cpu('gatehouse', 'client'), cpu('direct', 'client'))} |")
    L.append(f"| `freerdp-shadow-cli` (the asset's RDP server) | {rng(cpu('direct', 'asset_rdp'))} | {rng(cpu('gatehouse', 'asset_rdp'))} | "
             f"{diff(cpu('gatehouse', 'asset_rdp'), cpu('direct', 'asset_rdp'))} |")
    L.append(f"| **RDP processes together** (client + asset server + gateway net) | **{rng(tot_d)}** | **{rng(tot_g)}** | "
             f"**{diff(tot_g, tot_d)}** |")
    L.append(f"| the user's Xvfb (xfreerdp draws into it) | {rng(cpu('direct', 'client_x'))} | {rng(cpu('gatehouse', 'client_x'))} | "
             f"{diff(cpu('gatehouse', 'client_x'), cpu('direct', 'client_x'))} |")
    ax = {s: [r["cpu_per_min"]["asset_x"] + r["painter_cpu_per_min"] for r in by[s]] for s in SETUPS}
    L.append(f"| the asset's Xvfb + painter (the same drawing both ways: a noise control) | {rng(ax['direct'])} | "
             f"{rng(ax['gatehouse'])} | {diff(ax['gatehouse'], ax['direct'])} |")
    L.append("")
    L.append("| bytes per session-minute | direct | via Gatehouse | Gatehouse / direct |")
    L.append("|---|---|---|---|")
    tu = {s: [r["to_user_bytes_per_min"] / 1e6 for r in by[s]] for s in SETUPS}
    fa = {s: [r["from_asset_bytes_per_min"] / 1e6 for r in by[s]] for s in SETUPS}
    L.append(f"| on the wire to the user (MB: server → xfreerdp, TCP payload acked, TLS included) | {rng(tu['direct'])} | "
             f"{rng(tu['gatehouse'])} | {H.ratio(med(tu['gatehouse']), med(tu['direct']))} |")
    L.append(f"| from the asset's RDP server to its client (MB; via Gatehouse the client is the gateway) | {rng(fa['direct'])} | "
             f"{rng(fa['gatehouse'])} | {H.ratio(med(fa['gatehouse']), med(fa['direct']))} |")
    gdr = [r for r in by["gatehouse"] if r.get("gdr")]
    gpm = [r["gdr"]["size"] / 1e6 * 60 / r["api"]["duration_seconds"] for r in gdr if (r.get("api") or {}).get("duration_seconds")]
    L.append(f"| **desktop recording** (`.gdr` MB per minute of session) | – | **{rng(gpm)}** | – |")
    L.append("")
    L.append(reading(res, tot_d, tot_g, gw_net, by, tu, gpm))
    L.append("")

    # details
    if gdr:
        sizes = [r["gdr"]["size"] for r in gdr]
        durs = [r["api"]["duration_seconds"] for r in gdr if (r.get("api") or {}).get("duration_seconds")]
        kinds = {}
        for r in gdr:
            for k, c in r["gdr"].items():
                if isinstance(c, list):
                    kinds.setdefault(k, []).append(c)
        parts = []
        for k in ("keyframe", "tile", "pointer", "event", "resize", "end"):
            if k in kinds:
                cnt = med([c[0] for c in kinds[k]])
                byt = med([c[1] for c in kinds[k]])
                parts.append(f"{k} {cnt:.0f} × = {byt / 1e6:.2f} MB ({100 * byt / med(sizes):.0f} %)")
        L.append(f"Recording: {rng([s / 1e6 for s in sizes])} MB per session of {rng(durs, 0)} s (connect to disconnect); by "
                 f"record type (median): " + "; ".join(parts) + ". Uncompressed it would be "
                 f"{sum(res.get('painted') or [0]) * 4 / 1e6:.0f} MB of RGBA for the pixels the script paints.")
    api_out = [(r["api"] or {}).get("bytes_out") for r in by["gatehouse"] if r.get("api")]
    if any(api_out):
        L.append(f"The session record's `bytes_out` (whole session, from `GET /api/v1/sessions/{{id}}`): {rng([x / 1e6 for x in api_out if x])} MB.")
    thr: dict[str, list] = {}
    for r in by["gatehouse"]:
        for k, val in r["gw_threads_per_min"].items():
            thr.setdefault(k, []).append(val)
    top = sorted(((k, med(vs + [0.0] * (len(by["gatehouse"]) - len(vs)))) for k, vs in thr.items()), key=lambda kv: -kv[1])
    if top:
        L.append("Gateway CPU by thread (s per session-minute, median, not net of the baseline): "
                 + ", ".join(f"`{k}` {val:.2f}" for k, val in top[:5] if val >= 0.01) + ".")
    after = [r.get("after_cpu_s") for r in by["gatehouse"] if r.get("after_cpu_s") is not None]
    if after:
        L.append(f"After the activity (screen check, disconnect, closing the recording, until the gateway is idle again): "
                 f"gateway CPU {rng(after)} s, the session ended {rng([r.get('ended_after_s') for r in by['gatehouse']], 1)} s "
                 f"after xfreerdp was stopped.")
    conn = {s: [r["connect_s"] for r in by[s]] for s in SETUPS}
    L.append(f"Connect to the asset's picture on the user's screen (0.5 s screenshot polling): direct {rng(conn['direct'], 1)} s, "
             f"via Gatehouse {rng(conn['gatehouse'], 1)} s.")
    scr = [r["screen"] for r in res["runs"] if "screen" in r]
    L.append(f"Screen check at the end (the e2e probes plus the final yellow box, and pixels differing by more than 10 % "
             f"between the user's screen and the asset's, ≤ 0.1 % allowed): "
             + "; ".join(f"{SETUP_LABEL[s]} {len(by[s])}/{n_all[s]} matched (differing pixels "
                         f"{rng([r['screen']['diff_pixels'] for r in res['runs'] if r.get('setup') == s and 'screen' in r], 0)})"
                         for s in SETUPS) + ".")
    late = [r["painter"]["late_max_s"] for r in runs]
    if late:
        L.append(f"Painter: each step at most {max(late) * 1000:.0f} ms late; its own CPU {rng([r['painter_cpu_per_min'] for r in runs], 2)} s/min.")
    rs, re_ = res.get("rss_start_kib"), res.get("rss_end_kib")
    rss_growth = None
    if rs and re_:
        seq = [r.get("rss_after_kib") for r in res["runs"] if r.get("rss_after_kib")]
        seq += [res["profile_rss_kib"]] if res.get("profile_rss_kib") else []
        line = (f"Gateway RSS: {rs / 1024:.0f} MiB at the start; after each Gatehouse session, in order (the profiled one "
                f"last), once the session had ended and the gateway was idle: {', '.join(f'{x / 1024:.0f}' for x in seq)} MiB")
        if len(seq) >= 2 and all(b > a for a, b in zip(seq, seq[1:])):
            rss_growth = (seq[-1] - rs) / len(seq) / 1024
            line += f" (**+{rss_growth:.0f} MiB per session, not given back when the sessions end**)"
        line += f"; {re_ / 1024:.0f} MiB at the end of the run"
        an0, an1, an2 = res.get("anon_start_kib"), res.get("anon_end_kib"), res.get("anon_trimmed_kib")
        if an0 and an1:
            line += f". Anonymous memory (RssAnon): {an0 / 1024:.0f} MiB at the start, {an1 / 1024:.0f} MiB at the end"
            if an2:
                line += (f", {an2 / 1024:.0f} MiB after `malloc_trim(0)` (called in the gateway with gdb): "
                         f"{(an1 - an2) / 1024:.0f} MiB were free memory the allocator kept, "
                         f"{(an2 - an0) / 1024:.0f} MiB over {len(seq)} sessions are still allocated")
        L.append(line + ".")
    L.append(f"Machine busy during the windows: {rng([100 * r['machine_busy'] for r in runs], 0)} % of both CPUs "
             f"({rng([r['machine_cpu_per_min'] for r in runs], 0)} CPU s/min; the processes above account for "
             f"{rng([sum(r['cpu_per_min'].values()) + r['painter_cpu_per_min'] for r in runs], 1)} of them, the rest is other "
             f"work on this shared machine). "
             f"Gateway log: {res.get('log_errors', 0)} error/warning lines.")
    L.append("")

    pf = res.get("profile")
    if pf:
        cg = "-g" if pf.get("call_graph") == "fp" else f"--call-graph {pf.get('call_graph')}"
        L.append(f"**Where the gateway's CPU goes** (`perf record {cg} -F {pf['freq']} -p GATEWAY` over the 60 s of one more, "
                 f"uncounted Gatehouse session; it used {pf['gw_cpu_per_min']:.2f} CPU s/min; {pf.get('samples') or '?'} samples; "
                 f"percentages of the gateway's samples):")
        L.append("")
        L.append("- by binary: " + ", ".join(f"{n} {p:.0f} %" for p, n in pf["dsos"] if p >= 1) + ";")
        L.append("- by thread: " + ", ".join(f"`{n}` {p:.0f} %" for p, n in pf["comms"] if p >= 1)
                 + " (`gatehouse`: the FreeRDP threads, one per leg, which decode the asset's updates and encode for the "
                 "user; `-qos.overcommit`: libdispatch workers, where the recorder's encoder queue runs);")
        L.append("- by thread and binary: " + ", ".join(f"`{c}` {d} {p:.0f} %" for p, c, d in pf.get("comm_dso", []) if p >= 1.5) + ";")
        inc = pf.get("inclusive") or {}

        def pc(key, label):
            return f"{label} {inc[key]:.0f} %" if key in inc else None

        def group(head, parts):
            h = pc(*head)
            rest = [x for x in (pc(*p) for p in parts) if x]
            return (h + (" (" + ", ".join(rest) + ")" if rest else "")) if h else None

        groups = [group(("recorder", "the recorder (`DesktopRecorder.encodePending`, its encoder queue)"),
                        [("zlib", "zlib `compress2`"), ("tiles", "by purpose: tiles `appendTiles`"),
                         ("keyframes", "keyframes `writeKeyframe`"), ("compare", "comparing cells `updateScreen`")]),
                  pc("capture", "copying frames for it on the user's thread (`DesktopRecorder.frame`)"),
                  group(("user leg", "the user leg (`peer_thread_main`)"),
                        [("planar", "planar encoding `freerdp_bitmap_compress_planar`"), ("bulk", "bulk compression `xcrush_compress`"),
                         ("tls write", "TLS `SSL_write`")]),
                  group(("asset leg", "the asset leg (`target_thread_main`)"),
                        [("decode planar", "`planar_decompress`"), ("bulk decode", "`xcrush_decompress`"), ("tls read", "`SSL_read`")])]
        groups = [g for g in groups if g]
        if groups:
            L.append(f"- inclusive time (a function and all it calls; `--call-graph {pf.get('call_graph', '?')}`): " + "; ".join(groups) + ";")
        L.append("- top symbols by self time (≥ 1 %): " + "; ".join(
            f"{p:.1f} % {short_sym(s_)} ({d})" for p, d, s_, k in pf["rows"] if p >= 1.0) + ".")
        L.append("")
    if res["failures"]:
        L.append("**Failures:**")
        L.append("")
        for f in res["failures"]:
            L.append(f"- {f['what']}: {f['detail'][:400]}")
        L.append("")
    for n in res["notes"]:
        L.append(f"Note: {n}")
        L.append("")
    summary = (f"{started:%Y-%m-%d %H:%M} rdp desktop (`benchmarks/rdp_desktop.py`, {a.rounds} round{'s' if a.rounds != 1 else ''} of {DURATION:.0f} s) "
               f"commit {info['commit']}; CPU s/min gateway net {fmt2(med(gw_net))}, RDP processes direct {fmt2(med(tot_d))} "
               f"vs Gatehouse {fmt2(med(tot_g))}; to user {fmt2(med(tu['direct']))} vs {fmt2(med(tu['gatehouse']))} MB/min; "
               f"recording {fmt2(med(gpm))} MB/min; screens matched {len(by['direct'])}/{n_all['direct']} direct, "
               f"{len(by['gatehouse'])}/{n_all['gatehouse']} Gatehouse; failures {len(res['failures'])}")
    return "\n".join(L), summary


def reading(res: dict, tot_d, tot_g, gw_net, by, tu, gpm) -> str:
    """The short interpretation, from this run's numbers."""
    md, mg, gn = med(tot_d), med(tot_g), med(gw_net)
    if md is None or mg is None or gn is None:
        return "**Reading it:** not enough successful runs to compare."
    out = [f"**Reading it:** through Gatehouse the RDP processes need {mg / md:.2f}× the CPU of a direct session "
           f"({md:.2f} → {mg:.2f} s per minute). The difference is the gateway's own {gn:.2f} s per minute, "
           f"{100 * gn / 60:.1f} % of one CPU for this busy minute"]
    same = all(abs((med([r['cpu_per_min'][k] for r in by['gatehouse']]) or 0) - (med([r['cpu_per_min'][k] for r in by['direct']]) or 0))
               <= 0.1 * max(0.05, med([r['cpu_per_min'][k] for r in by['direct']]) or 0) for k in ("client", "asset_rdp"))
    out[-1] += ("; xfreerdp and the shadow server spend what they spend in a direct session." if same else ".")
    inc = (res.get("profile") or {}).get("inclusive") or {}
    if {"recorder", "user leg", "asset leg"} <= inc.keys():
        out.append(f"About {inc['recorder']:.0f} % of the gateway's time is the recorder (zlib alone {inc.get('zlib', 0):.0f} %), "
                   f"{inc['user leg']:.0f} % re-encoding for the user (planar bitmaps, then RDP bulk compression) and "
                   f"{inc['asset leg']:.0f} % receiving and decoding the asset's updates.")
    wd, wg = med(tu["direct"]), med(tu["gatehouse"])
    if wd and wg:
        out.append(("The user receives the same number of bytes as from the asset directly: the gateway's re-encoding is as "
                    "compact as what the shadow server sends." if abs(wg / wd - 1) < 0.05 else
                    f"The user receives {wg / wd:.2f}× the bytes of a direct session."))
    g = med(gpm)
    gdr = [r["gdr"] for r in by["gatehouse"] if r.get("gdr")]
    if g and wg:
        kf = med([100 * r["keyframe"][1] / r["size"] for r in gdr if "keyframe" in r])
        out.append(f"The recording is {g / wg:.1f}× what goes on the wire: {g:.1f} MB per minute, about "
                   f"{g * 60 / 1000:.1f} GB per hour of activity like this: its tiles are zlib (level 1) over Sub-filtered RGB "
                   f"(format version 2), where RDP sends planar, run-length coded bitmaps and bulk-compresses them"
                   + (f"; keyframes (one per 10 s of activity, zlib level 6) are {kf:.0f} % of its bytes" if kf else "")
                   + (f" and {inc['keyframes']:.0f} % of the gateway's CPU" if "keyframes" in inc else "") + ".")
    return " ".join(out)


def fmt2(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def short_sym(sym: str) -> str:
    sym = re.sub(r"\s+", " ", sym)
    return f"`{sym[:67] + '…' if len(sym) > 70 else sym}`"


def write_section(path: Path, section: str, history_line: str | None) -> None:
    """Replaces this benchmark's section of RESULTS.md, or inserts it before "## History"; appends the History line."""
    results_md.write_section(path, section, key=SECTION_KEY, history_line=history_line)


def main() -> int:
    ap = argparse.ArgumentParser(description="RDP desktop through Gatehouse vs direct: CPU, bytes, recording size. "
                                             "See benchmarks/README.md.")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, no profile (about 3 min)")
    ap.add_argument("--rounds", "-n", type=int, help="rounds; each runs one direct and one Gatehouse session (default 3)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between the first matching screen and the activity")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                    help="one more, uncounted Gatehouse session under `perf record -g -p GATEWAY` (default on, off with --quick)")
    ap.add_argument("--perf-freq", type=int, default=1999, help="perf sampling frequency (default 1999 Hz)")
    ap.add_argument("--call-graph", default="dwarf,16384",
                    help="perf call graphs: fp (`perf record -g`: frame pointers, which zlib and FreeRDP's libraries do not "
                         "keep) or dwarf[,stack bytes] (default dwarf,16384: unwinds through them, so time in zlib is "
                         "attributed to the recorder's keyframes or tiles)")
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
    ap.add_argument("--json", type=Path, help="also dump the raw per-run results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, screenshots, recordings, perf data)")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.profile = a.profile if a.profile is not None else not a.quick
    a.gatehouse_bin = (a.gatehouse_bin or a.scratch_path / "release" / "gatehouse").resolve()
    results_path = a.results or (BENCH_DIR / "RESULTS.md" if a.write_results else None)

    load_helpers()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, H._on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    missing = R.missing_tools() + [t for t in ("openssl", "ss", "compare") if not shutil.which(t)]
    if missing:
        log(f"missing tools: {', '.join(missing)} (Debian: xvfb x11-apps imagemagick freerdp2-x11 freerdp2-shadow-x11 "
            f"winpr-utils xdotool iproute2 openssl)")
        return 2
    need, why = CS.binary_state(a)
    if a.build or (need and not a.no_build):
        try:
            CS.build(a, why)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(str(e))
            return 2
    else:
        log(f"not building: {why if not a.no_build else '--no-build'}")
    if not os.access(a.gatehouse_bin, os.X_OK):
        log(f"no gateway binary at {a.gatehouse_bin}")
        return 2
    info = CS.commit_info(a)

    bench = RdpBench(a)
    bench.results["started"] = datetime.datetime.now().astimezone()
    bench.results["versions"] = versions()
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
        if bench.gw is not None and bench.gw.log_path.exists():
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
    if any("error" not in r for r in bench.results["runs"]):
        body, summary = render(bench.results, info, a)
        print()
        print(body)
        print(summary)
        if results_path and rc == 0:
            write_section(results_path, body, f"- {summary}")
            log(f"wrote the section to {results_path}")
    if rc == 0 and bench.results["failures"]:
        rc = 3
    return rc


if __name__ == "__main__":
    if "--painter" in sys.argv[1:]:
        sys.exit(painter_main(sys.argv[1:]))
    sys.exit(main())
