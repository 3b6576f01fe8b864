"""RESULTS.md upkeep shared by the benchmark scripts: each owns one "## N. ..." section."""
from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, section: str, key: str, history_line: str | None = None,
                  before: str = r"## History") -> None:
    """Replaces the section whose heading starts with `key`, or inserts it before the first
    heading matching `before` (else at the end); appends `history_line` to "## History"."""
    text = path.read_text() if path.exists() else "# Gatehouse benchmark results\n\n"
    chunks = re.split(r"(?m)^(?=## )", text)
    body = section.rstrip("\n") + "\n\n"
    out, placed = [], False
    for c in chunks:
        if c.startswith(key):
            if not placed:
                out.append(body)
                placed = True
            continue
        if not placed and re.match(before, c):
            out.append(body)
            placed = True
        if history_line and c.startswith("## History"):
            c = c.rstrip("\n") + "\n" + history_line + "\n"
        out.append(c)
    if not placed:
        out.append("\n" + section.rstrip("\n") + "\n")
    path.write_text("".join(out))
