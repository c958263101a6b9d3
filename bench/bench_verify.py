#!/usr/bin/env python3
"""Verify throughput against header de-identification, on the same corpus in the same run.

The issue's target: the verifier's header checks must not be slower than the header
de-identification itself (pixel OCR is measured separately). Both run in one process here, so
the ratio is per core; files/s counts the released files checked (the originals are read too).

Usage: .venv/bin/python bench/bench_verify.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_deid import WORK, CorpusSpec, build_corpus
from radguard.deid.keys import Keyring
from radguard.pipeline import RunOptions, run_deid
from radguard.settings import load_policy
from radguard.verify import verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 files instead of 1,000")
    args = parser.parse_args(argv)
    spec = CorpusSpec("ct-200" if args.quick else "ct-1000", "ct", 200 if args.quick else 1000, 10)
    build_corpus(spec, workers=2)
    out = WORK / "verify-out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f"{out.name}.run", ignore_errors=True)
    policy = load_policy("research")
    started = time.perf_counter()
    summary = run_deid(RunOptions(spec.folder, out, workers=1), policy, Keyring(b"\x01" * 32))
    deid_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = verify(out, spec.folder, policy)
    verify_seconds = time.perf_counter() - started
    released = summary.counts["released"]
    megabytes = report.bytes_checked / 1e6
    print(f"corpus {spec.name}: {released} released files, {megabytes:.1f} MB")
    print(f"deid   (1 process): {released / deid_seconds:7.1f} files/s")
    print(
        f"verify (1 process): {report.files_checked / verify_seconds:7.1f} files/s "
        f"{megabytes / verify_seconds:6.1f} MB/s  (reads {report.originals_read} originals "
        "too)"
    )
    print(f"verify / deid: {deid_seconds / verify_seconds:.2f}x  (target >= 1.0)")
    print(f"verdict: {'passed' if report.passed else 'FAILED'}, {len(report.findings)} findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
