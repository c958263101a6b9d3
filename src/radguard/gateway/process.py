"""One release batch: the same pipeline as ``radguard deid``, the verifier, then the outboxes.

A batch holds every study that became quiet since the last release. It runs ``run_deid``
(read, gate, header, pixels, faces, write; the risk limit applies to the whole batch, since
one study alone is always unique), then ``verify`` against the originals, then puts each
released study into every destination's outbox. Whatever is not released goes to the dead
letter folder with its reason: a quarantined instance (its original), a study with a verifier
finding (its de-identified files, kept out of every destination), a batch withheld by the risk
gate. Each step is idempotent, so a batch interrupted by a crash is simply run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard.deid.keys import Keyring
from radguard.gateway.config import Destination
from radguard.gateway.metrics import Metrics
from radguard.gateway.spool import Spool, fsync_dir, read_json, remove_tree, write_json_atomic
from radguard.settings import Policy

_MAX_REASONS = 20


@dataclass(frozen=True)
class PipelineSettings:
    """What a batch needs besides the spool: policy, key and the checks to run."""

    policy: Policy
    keyring: Keyring
    destinations: tuple[Destination, ...]
    workers: int = 1
    max_prosecutor: float | None = None
    verify: bool = True
    patient_hashes: bool = False  # the ledger needs each study's keyed patient hash
    purpose: str = ""  # consent gate: exclude opt-outs for this purpose ("" : no gate)
    require_consent: bool = False
    consent_registry: str = ""


@dataclass
class BatchOutcome:
    """Counts of one batch (for logs, metrics and tests)."""

    batch: str
    studies: int = 0
    released_studies: int = 0
    released_instances: int = 0
    quarantined: int = 0
    excluded: int = 0
    withheld: bool = False
    verify_failed_studies: int = 0
    deid_s: float = 0.0
    verify_s: float = 0.0
    reasons: list[str] = field(default_factory=list)


def process_batch(
    spool: Spool, batch: Path, settings: PipelineSettings, metrics: Metrics
) -> BatchOutcome:
    """Run one batch to the end (or again, after a crash); remove it when done."""
    from radguard.pipeline import RunOptions, run_deid

    outcome = BatchOutcome(batch.name)
    info = read_json(batch / "batch.json") or {"studies": []}
    arrivals = {s["key"]: s for s in info.get("studies", [])}
    outcome.studies = len(arrivals)
    if (batch / "enqueued.json").exists():
        _finish(spool, batch)
        return outcome
    source, out = batch / "in", batch / "out"
    run_dir = batch / "out.run"
    if not source.exists() or not any(source.iterdir()):
        _finish(spool, batch)
        return outcome
    started = time.perf_counter()
    summary = run_deid(
        RunOptions(
            source,
            out,
            workers=settings.workers,
            quarantine=False,
            max_risk=settings.max_prosecutor,
            purpose=settings.purpose,
            require_consent=settings.require_consent,
            consent_registry=settings.consent_registry,
        ),
        settings.policy,
        settings.keyring,
    )
    outcome.deid_s = round(time.perf_counter() - started, 2)
    lines = _manifest(run_dir / "manifest.jsonl")
    batch_summary: dict[str, Any] = {
        "batch": batch.name,
        "policy": settings.policy.name,
        "policy_sha256": settings.policy.sha256,
        "key_fingerprint": settings.keyring.fingerprint,
        "risk": summary.risk,
    }
    if summary.withheld:
        outcome.withheld = True
        released = [line for line in lines if line["status"] == "withheld"]
        reason = released[0]["reasons"][0] if released and released[0]["reasons"] else "risk"
        spool.dead_letter(
            Path(summary.withheld),
            "withheld",
            batch.name,
            {
                "reason": reason,
                "files": len(released),
                "studies": len(arrivals),
                "risk": summary.risk,
            },
        )
        metrics.inc("failed", "withheld", len(released))
        outcome.reasons.append(reason)
    bad_studies: dict[str, list[str]] = {}
    if settings.verify and not summary.withheld and summary.counts.get("released"):
        started = time.perf_counter()
        bad_studies = _verify(out, source, settings.policy)
        outcome.verify_s = round(time.perf_counter() - started, 2)
        batch_summary["verify"] = "passed" if not bad_studies else "some studies withheld"
    # What was not released: originals to the dead letter folder, with the reasons.
    for line in lines:
        status = line["status"]
        if status in ("quarantined", "failed"):
            original = source / line["input"]
            if original.exists():
                spool.dead_letter(
                    original,
                    "pipeline",
                    f"{batch.name}-{line['input_digest']}",
                    {"reason": "; ".join(line["reasons"][:3]), "status": status, "files": 1},
                )
            outcome.quarantined += 1
            metrics.inc("failed", "pipeline")
            outcome.reasons.extend(line["reasons"][:1])
        elif status == "excluded":
            outcome.excluded += 1
            metrics.inc("excluded")
    for study, findings in sorted(bad_studies.items()):
        folder = out / study
        files = sum(1 for _ in folder.rglob("*.dcm")) if folder.exists() else 0
        if folder.exists():
            spool.dead_letter(
                folder,
                "verify",
                f"{batch.name}-{_short(study)}",
                {
                    "reason": "verifier findings",
                    "findings": findings[:_MAX_REASONS],
                    "files": files,
                },
            )
        outcome.verify_failed_studies += 1
        metrics.inc("failed", "verify", files)
        outcome.reasons.append(f"verifier findings in a study: {findings[0]}")
    if not summary.withheld:
        inputs: dict[str, set[str]] = {}  # <patient>/<study> of the output -> input study keys
        originals: dict[str, str] = {}  # <patient>/<study> -> one original (its Patient ID)
        modalities: dict[str, dict[str, int]] = {}
        for line in lines:
            if line["status"] == "released" and line.get("output"):
                key = str(Path(*Path(line["output"]).parts[:2]))
                inputs.setdefault(key, set()).add(Path(line["input"]).parts[0])
                originals.setdefault(key, line["input"])
                counts = modalities.setdefault(key, {})
                modality = line.get("modality") or "??"
                counts[modality] = counts.get(modality, 0) + 1
        now = time.time()
        for study_dir in _study_folders(out):
            relative = str(study_dir.relative_to(out))
            keys = inputs.get(relative, set()) & arrivals.keys()
            first = min((arrivals[k]["first_arrival"] for k in keys), default=now)
            last = max((arrivals[k]["last_arrival"] for k in keys), default=now)
            study_summary = {**batch_summary, "modalities": modalities.get(relative, {})}
            if settings.patient_hashes and relative in originals:
                study_summary["patient_hash"] = _patient_hash(
                    source / originals[relative], settings.keyring
                )
            count = _enqueue(spool, study_dir, settings.destinations, study_summary, first, last)
            outcome.released_studies += 1
            outcome.released_instances += count
            metrics.inc("released", "", count)
            metrics.inc("released_studies")
    write_json_atomic(batch / "enqueued.json", {"at": time.time(), **outcome.__dict__})
    _finish(spool, batch)
    return outcome


def process_batch_isolated(
    root: Path, batch: Path, settings: PipelineSettings
) -> tuple[BatchOutcome, dict[tuple[str, str], float]]:
    """``process_batch`` in a worker process: returns the outcome and the counter increments.

    The gateway runs batches in a separate process so that de-identification and the
    verifier never hold the receiving process's interpreter lock (associations and deliveries
    stay responsive), and a crash in a decoder takes down a worker, not the node.
    """
    metrics = Metrics()
    outcome = process_batch(Spool(root, b""), batch, settings, metrics)
    return outcome, dict(metrics.counters)


def die_with_parent() -> None:
    """Worker initializer (Linux): SIGKILL this worker when the gateway process dies, so a
    killed gateway never leaves an orphan working on a batch the next gateway runs again."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
        pass


def _manifest(path: Path) -> list[dict[str, Any]]:
    lines = []
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            for text in handle:
                try:
                    lines.append(json.loads(text))
                except json.JSONDecodeError:
                    continue
    return lines


def _verify(out: Path, source: Path, policy: Policy) -> dict[str, list[str]]:
    """Studies (``<patient>/<study>`` folders of ``out``) with verifier findings (masked)."""
    from radguard.verify import verify

    bad: dict[str, list[str]] = {}
    every = [str(Path(*p.relative_to(out).parts[:2])) for p in _study_folders(out)]
    try:
        report = verify(out, source, policy)
    except Exception as error:  # noqa: BLE001 - a verifier that cannot run releases nothing
        return {study: [f"the verifier could not run ({type(error).__name__})"] for study in every}
    for finding in report.findings:
        text = f"{finding.category} at {finding.path}: {finding.why} ({finding.found})"
        parts = Path(finding.file).parts if finding.file else ()
        studies = [str(Path(*parts[:2]))] if len(parts) >= 2 else every  # set-level: all
        for study in studies:
            bad.setdefault(study, []).append(text)
    return bad


def _study_folders(out: Path) -> list[Path]:
    """``out/<patient>/<study>`` folders holding released files."""
    if not out.exists():
        return []
    return sorted(
        study
        for patient in out.iterdir()
        if patient.is_dir()
        for study in patient.iterdir()
        if study.is_dir() and any(study.rglob("*.dcm"))
    )


def _enqueue(
    spool: Spool,
    study_dir: Path,
    destinations: tuple[Destination, ...],
    summary: dict[str, Any],
    first_arrival: float,
    last_arrival: float,
) -> int:
    """Put one released study into every destination's outbox (hard links, one rename each)."""
    files = sorted(study_dir.rglob("*.dcm"))
    records = [
        {
            "path": str(path.relative_to(study_dir.parent)),  # <study>/<series>/<sop>.dcm
            "sop_instance_uid": path.stem,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        for path in files
    ]
    study_uid = study_dir.name
    name = f"{summary['batch']}-{_short(study_uid)}"
    for destination in destinations:
        box = spool.outbox(destination.name)
        final = box / name
        if (final / "entry.json").exists():
            continue  # enqueued before a crash
        remove_tree(final)
        staging = box / f".tmp-{name}"
        remove_tree(staging)
        for record, path in zip(records, files, strict=True):
            target = staging / record["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
        write_json_atomic(
            staging / "entry.json",
            {
                "created": time.time(),
                "destination": destination.name,
                "study": study_uid,
                "files": records,
                "attempts": 0,
                "next_attempt": 0.0,
                "sent": False,
                "last_error": "",
                "first_arrival": first_arrival,
                "last_arrival": last_arrival,
                "summary": summary,
            },
        )
        os.sync()  # the hard links' folders: durable before the entry becomes visible
        os.rename(staging, final)
        fsync_dir(box)
    return len(files)


def _patient_hash(original: Path, keyring: Keyring) -> str:
    """The ledger's keyed hash of the study's original Patient ID (never the ID itself)."""
    import pydicom

    from radguard.govern.consent import patient_hash

    ds = pydicom.dcmread(original, stop_before_pixels=True, specific_tags=["PatientID"])
    return patient_hash(keyring, str(ds.get("PatientID", "") or "")).hex()


def _finish(spool: Spool, batch: Path) -> None:
    """Keep the run records, remove the batch (originals of released files included)."""
    run_dir = batch / "out.run"
    if run_dir.exists():
        target = spool.root / "records" / f"{batch.name}.run"
        if target.exists():
            remove_tree(target)
        os.rename(run_dir, target)
    remove_tree(batch)
    fsync_dir(batch.parent)


def _short(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:16]
