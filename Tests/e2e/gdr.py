"""Gatehouse desktop recordings (`.gdr`, version 2; docs/desktop-recording.md) for tests: a
writer that makes recordings with known pixels at known times, and a reader to check them.

    w = Writer(320, 200, title="alice@win01")
    w.keyframe_fill(0, (255, 0, 0))          # t in milliseconds
    w.tile_fill(1000, 0, 0, 160, 100, (0, 255, 0))
    w.pointer(2000, 100, 50)
    w.event(2500, {"kind": "clipboard", "direction": "upload", "text": "hi", "bytes": 2})
    w.end(3000)
    data = w.data()
"""
from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass

RESIZE, TILE, KEYFRAME, POINTER, EVENT, END = 1, 2, 3, 4, 5, 6
RECORD_HEADER = struct.Struct("<BII")  # type, payload length, time in ms


def header_line(width: int, height: int, timestamp: int | None = None, title: str = "") -> bytes:
    """The JSON header line, without its newline."""
    value = {"version": 2, "kind": "gatehouse-desktop", "width": width, "height": height,
             "timestamp": int(time.time()) if timestamp is None else timestamp, "title": title}
    return json.dumps(value, separators=(",", ":")).encode()


def record(kind: int, t: int, payload: bytes = b"") -> bytes:
    return RECORD_HEADER.pack(kind, len(payload), t) + payload


def solid(width: int, height: int, rgb) -> bytes:
    """width x height pixels of one colour, RGBA, alpha 255."""
    return bytes((*rgb, 255)) * (width * height)


def sub_filtered_rgb(rgba: bytes, width: int, height: int) -> bytes:
    """Tile pixels as stored: RGB, each byte after a row's first pixel minus the byte of the
    pixel to its left, modulo 256 (PNG's Sub filter)."""
    out = bytearray(width * height * 3)
    for y in range(height):
        pr = pg = pb = 0
        for x in range(width):
            s, d = (y * width + x) * 4, (y * width + x) * 3
            r, g, b = rgba[s], rgba[s + 1], rgba[s + 2]
            out[d], out[d + 1], out[d + 2] = (r - pr) & 255, (g - pg) & 255, (b - pb) & 255
            pr, pg, pb = r, g, b
    return bytes(out)


def rgba_of(stored: bytes, width: int, height: int) -> bytes:
    """The inverse of sub_filtered_rgb (alpha 255)."""
    out = bytearray(b"\xff" * (width * height * 4))
    for y in range(height):
        r = g = b = 0
        for x in range(width):
            s, d = (y * width + x) * 3, (y * width + x) * 4
            r, g, b = (r + stored[s]) & 255, (g + stored[s + 1]) & 255, (b + stored[s + 2]) & 255
            out[d], out[d + 1], out[d + 2] = r, g, b
    return bytes(out)


def image_record(kind: int, t: int, x: int, y: int, width: int, height: int, rgba: bytes) -> bytes:
    assert len(rgba) == width * height * 4, "RGBA bytes must be width x height x 4"
    stored = zlib.compress(sub_filtered_rgb(rgba, width, height))
    return record(kind, t, struct.pack("<HHHH", x, y, width, height) + stored)


class Writer:
    """Builds a recording in memory; every method takes the record's time in ms since the header."""

    def __init__(self, width: int, height: int, timestamp: int | None = None, title: str = ""):
        self.width, self.height = width, height
        self.header = header_line(width, height, timestamp, title)
        self.records: list[bytes] = []

    def add(self, data: bytes) -> "Writer":
        self.records.append(data)
        return self

    def resize(self, t: int, width: int, height: int) -> "Writer":
        self.width, self.height = width, height
        return self.add(record(RESIZE, t, struct.pack("<HH", width, height)))

    def tile(self, t: int, x: int, y: int, width: int, height: int, rgba: bytes) -> "Writer":
        return self.add(image_record(TILE, t, x, y, width, height, rgba))

    def tile_fill(self, t: int, x: int, y: int, width: int, height: int, rgb) -> "Writer":
        return self.tile(t, x, y, width, height, solid(width, height, rgb))

    def keyframe(self, t: int, rgba: bytes, width: int | None = None, height: int | None = None) -> "Writer":
        width, height = width or self.width, height or self.height
        self.width, self.height = width, height
        return self.add(image_record(KEYFRAME, t, 0, 0, width, height, rgba))

    def keyframe_fill(self, t: int, rgb, width: int | None = None, height: int | None = None) -> "Writer":
        width, height = width or self.width, height or self.height
        return self.keyframe(t, solid(width, height, rgb), width, height)

    def pointer(self, t: int, x: int, y: int) -> "Writer":
        return self.add(record(POINTER, t, struct.pack("<HH", x, y)))

    def event(self, t: int, value: dict) -> "Writer":
        return self.add(record(EVENT, t, json.dumps(value).encode()))

    def end(self, t: int) -> "Writer":
        return self.add(record(END, t))

    def data(self) -> bytes:
        return self.header + b"\n" + b"".join(self.records)


@dataclass
class Record:
    kind: int
    t: int
    payload: bytes


def read(data: bytes) -> tuple[dict, list[Record]]:
    """The header and the whole records of a recording (a torn last record is left out)."""
    newline = data.index(b"\n")
    header = json.loads(data[:newline])
    records, offset = [], newline + 1
    while len(data) - offset >= RECORD_HEADER.size:
        kind, length, t = RECORD_HEADER.unpack_from(data, offset)
        start = offset + RECORD_HEADER.size
        if len(data) - start < length:
            break
        records.append(Record(kind, t, data[start:start + length]))
        offset = start + length
    return header, records
