"""Shared by the generator scripts: write a generated file, or check that it is up to date."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(out: Path, text: str, script: str, check: bool) -> int:
    """With ``check``, exit status 1 when ``out`` differs from ``text``; else write it."""
    if check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is out of date: run {script}", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0
