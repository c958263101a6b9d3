#!/usr/bin/env python3
"""Per-file instruction counts (valgrind callgrind): radguard's engine against a plain loop.

Wall-clock timings on a shared 2-vCPU VM vary by up to 2x; instruction counts do not. For each
file this runs, under callgrind, a plain pydicom read+write of the file N times and the same
with ``Engine.apply`` (research policy) in between, subtracts a zero-iteration run (start-up),
and prints instructions per file and the ratio plain / radguard (the per-core throughput
ratio the issue's 0.8x target is about, independent of the machine's load).

Usage: .venv/bin/python bench/bench_instructions.py [FILE ...]   (needs valgrind)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pydicom.data

_LOOP = r"""
import io, sys
from pathlib import Path
import pydicom
from radguard.settings import load_policy
from radguard.deid import Engine, Pseudonymizer, Keyring
mode, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = Path(path).read_bytes()
engine = Engine(load_policy("research"), Pseudonymizer(Keyring(b"\x01" * 32)))
for i in range(n):
    ds = pydicom.dcmread(io.BytesIO(data))
    if mode == "radguard":
        ds.PatientID = f"P{i}"  # a new patient each time: no cache helps
        engine.apply(ds)
    ds.save_as(io.BytesIO(), enforce_file_format=True)
"""


def instructions(mode: str, n: int, path: Path) -> int:
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _LOOP,
            mode,
            str(n),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if not match:
        raise RuntimeError(result.stderr[-500:])
    return int(match.group(1))


def per_file(mode: str, path: Path, n: int = 20) -> float:
    return (instructions(mode, n, path) - instructions(mode, 0, path)) / n


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or [
        Path(pydicom.data.__file__).parent / "test_files" / name
        for name in ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "US1_UNCR.dcm")
        if (Path(pydicom.data.__file__).parent / "test_files" / name).exists()
    ]
    print(f"{'file':40} {'plain Minstr':>13} {'radguard Minstr':>16} {'ratio':>6}")
    for path in files:
        plain, ours = per_file("plain", path), per_file("radguard", path)
        print(f"{path.name:40} {plain / 1e6:13.2f} {ours / 1e6:16.2f} {plain / ours:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
