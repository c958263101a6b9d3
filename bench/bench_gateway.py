#!/usr/bin/env python3
"""Gateway load: 8 concurrent associations send 2,000 instances to radguard serve, which
de-identifies, verifies and forwards them by C-STORE into an Orthanc research archive.

Reports instances/s received (C-STORE answered, spooled with fsync) and forwarded (in the
archive), the per-study latency measured by the gateway (last instance received -> delivered,
which includes the quiet period), and checks the archive ends with every released instance
exactly once. Baseline in the same run: ``run_deid`` on the same files in one process.

The modality is dcmtk's storescu (one process per association and transfer syntax); the
archive is Orthanc (Debian packages orthanc). Run it niced on a shared machine:

    nice -n 10 .venv/bin/python bench/bench_gateway.py [--instances 2000] [--associations 8]
        [--policy research|basic|FILE] [--workers 1] [--quiet 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom
import requests

from radguard.deid.keys import load_key, new_key_file
from radguard.phantom import generate
from radguard.pipeline import RunOptions, run_deid
from radguard.settings import load_policy

WORK = Path(__file__).resolve().parent / "work" / "gateway"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
_FLAGS = {
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.1.99": "-xd",
}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _corpus(instances: int) -> list[Path]:
    """The first ``instances`` files of a phantom (128 files per patient), cached."""
    patients = -(-instances // 120)
    folder = WORK / f"phantom-{patients}"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(folder.parent / f"{folder.name}.answer.json", ignore_errors=True)
        generate(folder, patients, 1, workers=2)
        (folder / ".complete").write_text("")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return files[:instances]


def _by_study(files: list[Path]) -> list[list[Path]]:
    studies: dict[str, list[Path]] = {}
    for path in files:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        studies.setdefault(uid, []).append(path)
    return list(studies.values())


def _send(port: int, files: list[Path], errors: list[str]) -> None:
    """One association per transfer syntax group, as a modality configured for it."""
    from pydicom.filereader import read_file_meta_info

    groups: dict[str, list[str]] = {}
    for path in files:
        flag = _FLAGS.get(str(read_file_meta_info(path).TransferSyntaxUID), "-xe")
        groups.setdefault(flag, []).append(str(path))
    head = ["storescu", "-aet", "MODALITY", "-aec", "RADGUARD", "-R", "-nh"]
    for flag, paths in groups.items():
        run = subprocess.run(
            [*head, flag, "127.0.0.1", str(port), *paths],
            capture_output=True,
            text=True,
        )
        if run.returncode:
            errors.append(run.stderr[-300:])


def _wait(check, timeout: float, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit("timed out")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--associations", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="gateway pipeline workers")
    parser.add_argument("--quiet", type=float, default=2.0, help="quiet period (s)")
    parser.add_argument("--policy", default="research", help="policy of the pipeline")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    files = _corpus(args.instances)
    root = Path(tempfile.mkdtemp(prefix="bench-gateway-", dir=WORK))
    key = new_key_file(root / "pseudonym.key")
    policy = load_policy(args.policy)

    # Baseline: the same files through run_deid in one process.
    baseline_in = root / "baseline-in"
    for index, path in enumerate(files):
        target = baseline_in / f"{index:05d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    started = time.perf_counter()
    summary = run_deid(
        RunOptions(baseline_in, root / "baseline-out", workers=args.workers), policy, load_key(key)
    )
    baseline_s = time.perf_counter() - started
    expected = {p.stem for p in (root / "baseline-out").rglob("*.dcm")}
    print(
        f"corpus: {len(files)} instances, {summary.counts['released']} released by the pipeline, "
        f"{summary.counts['quarantined']} quarantined (burned-in text)"
    )
    print(
        f"baseline run_deid ({args.workers} worker, policy {args.policy}): "
        f"{len(files) / baseline_s:7.1f} instances/s"
    )

    # The archive and the gateway.
    http, dicom, port, metrics_port = _port(), _port(), _port(), _port()
    (root / "archive").mkdir()
    (root / "archive" / "orthanc.json").write_text(
        json.dumps(
            {
                "Name": "ARCHIVE",
                "StorageDirectory": str(root / "archive" / "db"),
                "IndexDirectory": str(root / "archive" / "db"),
                "HttpPort": http,
                "DicomPort": dicom,
                "DicomAet": "ARCHIVE",
                "RemoteAccessAllowed": False,
                "Plugins": [str(PLUGIN)] if PLUGIN.exists() else [],
                "DicomAlwaysAllowStore": True,
                "DicomCheckCalledAet": False,
                "UnknownSopClassAccepted": True,
            }
        )
    )
    log = (root / "archive.log").open("wb")
    orthanc = subprocess.Popen(["Orthanc", str(root / "archive" / "orthanc.json")], stdout=log,
                               stderr=log)  # fmt: skip
    archive = f"http://127.0.0.1:{http}"
    _wait(lambda: _ok(f"{archive}/system"), 30, 0.1)
    config = root / "gateway.toml"
    config.write_text(
        f"""
[gateway]
ae_title = "RADGUARD"
host = "127.0.0.1"
port = {port}
allowed_calling_ae_titles = ["MODALITY"]
spool = "{root / "spool"}"
key_file = "{key}"
policy = "{args.policy}"
quiet_period_s = {args.quiet}
workers = {args.workers}
max_associations = {args.associations * 2}

[http]
port = {metrics_port}

[[destination]]
name = "archive"
type = "dimse"
host = "127.0.0.1"
port = {dicom}
ae_title = "ARCHIVE"
"""
    )
    serve_log = (root / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "radguard.cli", "serve", "--config", str(config)],
        stdout=serve_log,
        stderr=serve_log,
    )
    try:
        _wait(lambda: _ok(f"http://127.0.0.1:{metrics_port}/healthz"), 60, 0.2)
        studies = _by_study(files)
        shards: list[list[Path]] = [[] for _ in range(args.associations)]
        for study in sorted(studies, key=len, reverse=True):
            min(shards, key=len).extend(study)  # whole studies per association, balanced
        errors: list[str] = []
        threads = [threading.Thread(target=_send, args=(port, shard, errors)) for shard in shards]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        received_s = time.perf_counter() - started

        def count() -> int:
            return int(requests.get(f"{archive}/statistics", timeout=10).json()["CountInstances"])

        _wait(lambda: count() >= len(expected), 1800)
        archived_s = time.perf_counter() - started
        _wait(lambda: _idle(metrics_port), 120)
        held = requests.get(f"{archive}/instances", params={"expand": "1"}, timeout=60).json()
        uids = [i["MainDicomTags"]["SOPInstanceUID"] for i in held]
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        serve.terminate()
        serve.wait(60)
        orthanc.terminate()
        orthanc.wait(60)
    records = [json.loads(line) for line in (root / "spool/records/forwarded.jsonl").open()]
    last = sorted(r["latency_last_s"] for r in records)
    first = sorted(r["latency_first_s"] for r in records)
    forwarded = sum(r["instances"] for r in records)
    exact = sorted(uids) == sorted(expected) and len(uids) == len(set(uids))
    print(f"associations: {args.associations} concurrent storescu, {len(studies)} studies")
    print(f"storescu failures: {len(errors)}")
    print(f"received:  {len(files) / received_s:7.1f} instances/s ({received_s:.1f} s, fsync'd)")
    print(
        f"forwarded: {len(expected) / archived_s:7.1f} instances/s "
        f"(last in the archive {archived_s:.1f} s after the first send; "
        f"{len(expected) / archived_s / (len(files) / baseline_s):.2f}x the baseline)"
    )
    print(
        f"study latency, last instance received -> delivered (quiet period {args.quiet} s "
        f"included): p50 {statistics.median(last):.1f} s, p95 {_pct(last, 95):.1f} s, "
        f"max {last[-1]:.1f} s"
    )
    print(
        f"study latency, first instance received -> delivered: p50 {statistics.median(first):.1f}"
        f" s, p95 {_pct(first, 95):.1f} s, max {first[-1]:.1f} s"
    )
    print(f"C-STOREs to the archive: {forwarded} for {len(expected)} released instances")
    print(f"archive: {len(uids)} instances; every released instance exactly once: {exact}")
    batches = [line for line in metrics.splitlines() if line.startswith("radguard_gateway_batch")]
    print(f"gateway: {', '.join(batches)}")
    for line in (root / "serve.log").read_text().splitlines():
        if " batch " in line:
            print("  " + line.split("radguard.gateway: ", 1)[-1])
    shutil.rmtree(root, ignore_errors=True)
    return 0 if exact and not errors else 1


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _idle(metrics_port: int) -> bool:
    health = requests.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).json()
    return not any(health["queue"].values())


def _pct(values: list[float], pct: int) -> float:
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
