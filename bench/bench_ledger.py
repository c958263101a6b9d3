"""Ledger and signing measurements (docs/benchmarks.md, "Governance").

    nice .venv/bin/python bench/bench_ledger.py [--sizes 100000,1000000] [--files 200]

Ledger (SQLite, one file): append rate with one signed head per entry (what a gateway does)
and in batches of 1000 entries per head (what a large release does), full verification time,
and inclusion/consistency proof sizes, which grow as log2(n). Signing: PS3.15 Annex C DICOM
signatures by radguard (in process) next to dcmtk's dcmsign (one process per file, as it is
used from scripts) on the same files; and the release manifest (sha256 + decoded-pixel hash).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom


def _entry(i: int) -> dict[str, object]:
    return {
        "kind": "release",
        "recipient": {"name": f"Recipient {i % 50}", "address": "1 Example Road"},
        "purpose": "research",
        "agreement": f"DUA-{i % 17}",
        "files": 12,
        "patients": [{"patient": f"{i:032x}", "studies": [f"2.25.{i}1", f"2.25.{i}2"]}],
    }


def bench_ledger(sizes: list[int], work: Path) -> list[str]:
    from radguard.govern.keys import KeyKind, load_signer, new_signing_key, public_keys
    from radguard.govern.ledger import Ledger

    new_signing_key(KeyKind.LEDGER)
    signer, trusted = load_signer(KeyKind.LEDGER), public_keys(KeyKind.LEDGER)
    lines = [
        "| entries | append, 1 head/entry | append, 1000/head | verify (whole log) | "
        "inclusion proof | consistency proof | db size |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        path = work / f"ledger-{size}.sqlite"
        with Ledger.open(path, signer, trusted) as ledger:
            single = min(size, 20_000)  # per-entry appends measured on the first entries
            start = time.perf_counter()
            for i in range(single):
                ledger.append(_entry(i))
            single_rate = single / (time.perf_counter() - start)
            start = time.perf_counter()
            done = single
            while done < size:
                batch = min(1000, size - done)
                ledger.append_many([_entry(done + j) for j in range(batch)])
                done += batch
            batch_rate = (size - single) / (time.perf_counter() - start) if size > single else 0
            start = time.perf_counter()
            check = ledger.verify()
            verify_s = time.perf_counter() - start
            assert check.ok, check.problems
            inclusion = len(ledger.inclusion_proof(size // 3, size))
            consistency = len(ledger.consistency_proof(size // 3 + 1, size))
        mb = path.stat().st_size / 1e6
        lines.append(
            f"| {size:,} | {single_rate:,.0f}/s | {batch_rate:,.0f}/s | {verify_s:.1f} s "
            f"({size / verify_s:,.0f}/s) | {inclusion} hashes ({inclusion * 32} B) | "
            f"{consistency} hashes ({consistency * 32} B) | {mb:.0f} MB |"
        )
        print(lines[-1], flush=True)
        path.unlink()
    return lines


def bench_signing(count: int, work: Path) -> list[str]:
    from radguard.govern import dsig
    from radguard.govern.keys import KeyKind, load_signer, new_signing_key
    from radguard.govern.release import build_manifest

    new_signing_key(KeyKind.RELEASE)
    signer = load_signer(KeyKind.RELEASE)
    assert signer.certificate_pem is not None
    key, cert = work / "key.pem", work / "cert.pem"
    key.write_bytes(signer.private_pem)
    cert.write_bytes(signer.certificate_pem)
    source = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
    folders = {}
    for name in ("radguard", "dcmsign"):
        folders[name] = work / name
        folders[name].mkdir()
        for i in range(count):
            shutil.copy(source, folders[name] / f"{i:05d}.dcm")
    lines = [
        f"| {count} CT files (CT_small.dcm, 39 kB), ECDSA P-256, SHA-256 MAC | files/s |",
        "|---|---|",
    ]

    def row(label: str, seconds: float) -> None:
        lines.append(f"| {label} | {count / seconds:,.0f} |")
        print(lines[-1], flush=True)

    files = sorted(folders["radguard"].glob("*.dcm"))
    start = time.perf_counter()
    for path in files:
        ds = pydicom.dcmread(path)
        dsig.sign_dataset(ds, signer.private_pem, signer.certificate_pem, attributes=None)
        ds.save_as(path)
    row("radguard sign (all elements, read+sign+write)", time.perf_counter() - start)
    start = time.perf_counter()
    for path in files:
        assert all(c.valid for c in dsig.verify_file(path))
    row("radguard verify (read+verify)", time.perf_counter() - start)
    tool = shutil.which("dcmsign")
    if tool:
        dfiles = sorted(folders["dcmsign"].glob("*.dcm"))
        start = time.perf_counter()
        for path in dfiles:
            out = path.with_suffix(".signed")
            subprocess.run(
                [tool, "--sign", str(key), str(cert), "-pw", "--mac-sha256", str(path), str(out)],
                check=True,
                capture_output=True,
            )
        row("dcmsign --sign (one process per file)", time.perf_counter() - start)
        start = time.perf_counter()
        for path in dfiles:
            subprocess.run(
                [tool, "--verify", "+cf", str(cert), str(path.with_suffix(".signed"))],
                check=True,
                capture_output=True,
            )
        row("dcmsign --verify (one process per file)", time.perf_counter() - start)
        start = time.perf_counter()
        for path in files:  # cross-check: radguard-signed files verified by dcmsign
            subprocess.run(
                [tool, "--verify", "+cf", str(cert), str(path)], check=True, capture_output=True
            )
        row("dcmsign --verify of radguard-signed files", time.perf_counter() - start)
    start = time.perf_counter()
    build_manifest(folders["radguard"])
    row("release manifest (sha256 + decoded-pixel hash), 1 process", time.perf_counter() - start)
    return lines


def _pg_writer(args: tuple[str, str, int, int]) -> float:
    url, home, worker, count = args
    os.environ["RADGUARD_HOME"] = home
    from radguard.govern.keys import KeyKind, load_signer, public_keys
    from radguard.govern.ledger import Ledger

    with Ledger.open(url, load_signer(KeyKind.LEDGER), public_keys(KeyKind.LEDGER)) as ledger:
        start = time.perf_counter()
        for i in range(count):
            ledger.append(_entry(worker * 1_000_000 + i))
        return time.perf_counter() - start


def bench_postgres(url: str, count: int) -> list[str]:
    """Aggregate append rate (one signed head per entry) with 1 and 4 concurrent writers."""
    import multiprocessing

    import psycopg

    from radguard.govern.keys import KeyKind, public_keys
    from radguard.govern.ledger import Ledger

    lines = [
        "| PostgreSQL writers | entries | aggregate append rate | verify |",
        "|---|---|---|---|",
    ]
    for writers in (1, 4):
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("rg_meta", "rg_entries", "rg_nodes", "rg_heads", "rg_keys"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        Ledger.open(url).close()
        home = os.environ["RADGUARD_HOME"]
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(writers) as pool:
            pool.map(_pg_writer, [(url, home, w, count // writers) for w in range(writers)])
        rate = count / (time.perf_counter() - start)
        with Ledger.open(url, None, public_keys(KeyKind.LEDGER)) as ledger:
            start = time.perf_counter()
            check = ledger.verify()
            assert check.ok and check.size == count, check.problems
            verify_s = time.perf_counter() - start
        lines.append(f"| {writers} | {count:,} | {rate:,.0f}/s | {verify_s:.1f} s |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--postgres", default="", metavar="URL", help="also bench this server")
    parser.add_argument("--pg-entries", type=int, default=4000)
    parser.add_argument("--skip", default="", help="comma list: signing,ledger")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-bench-ledger-"))
    os.environ["RADGUARD_HOME"] = str(work / "home")
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus", flush=True)
        skip = set(args.skip.split(","))
        signing = [] if "signing" in skip else bench_signing(args.files, work)
        ledger = (
            [] if "ledger" in skip else bench_ledger([int(x) for x in args.sizes.split(",")], work)
        )
        postgres: list[str] = []
        if args.postgres:
            from radguard.govern.keys import KeyKind, new_signing_key

            if not (work / "home" / "keys" / "ledger").exists():
                new_signing_key(KeyKind.LEDGER)
            postgres = bench_postgres(args.postgres, args.pg_entries)
        print("\n".join(["", *ledger, "", *postgres, "", *signing]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
