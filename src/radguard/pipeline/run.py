"""One de-identification run: discover inputs, run the stages, keep the run records.

Run records live in ``<OUT>.run/`` beside the output (never inside it): ``manifest.jsonl``
(one line per input), ``summary.json``, the encrypted ``vault.sqlite`` and, when asked,
``quarantine/`` with copies of originals that were not released. A run that is killed and
started again resumes: inputs already released or excluded (with their output present) are
skipped, everything else is processed again, and outputs are idempotent (deterministic names,
atomic writes).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from radguard import __version__
from radguard.deid.keys import Keyring
from radguard.deid.pseudonym import Pseudonymizer
from radguard.deid.vault import Vault
from radguard.errors import RadguardError
from radguard.pipeline.events import FILE_REJECTED, FILE_RELEASED, RELEASE_COMPLETED, EventBus
from radguard.pipeline.executors import Task, default_workers, run_dask, run_local
from radguard.pipeline.stages import FileResult, Job, looks_complete, quarantine_copy
from radguard.profile.options import Option
from radguard.profile.table import load_table
from radguard.settings import Policy

STATUSES = ("released", "excluded", "quarantined", "failed")


@dataclass(frozen=True)
class RunOptions:
    input: Path
    output: Path
    workers: int = 0  # 0: all cores
    quarantine: bool = False
    dry_run: bool = False
    executor: str = "local"
    scheduler: str = ""
    max_risk: float | None = None  # overrides the policy's [risk] max_prosecutor
    # governance (radguard.govern): consent, signed release manifest, disclosure ledger
    purpose: str = ""  # enforce consent for this purpose (ai-training, research, ...)
    require_consent: bool = False  # release only patients who permitted the purpose
    consent_registry: str = ""  # default: $RADGUARD_HOME/consent.sqlite
    release_to: str = ""  # recipient name: append a ledger entry when the run completes
    release_address: str = ""
    agreement: str = ""  # data-use agreement reference
    legal_basis: str = ""
    ledger: str = ""  # SQLite path or postgresql:// URL (default: the site ledger)
    sign: bool = False  # write the signed release manifest (implied by release_to)
    sign_dicom: bool = False  # PS3.15 Annex C signature in every released file


@dataclass
class RunSummary:
    """Counts and provenance of a run (``summary.json``); never holds the key or PHI."""

    radguard_version: str
    policy: str
    policy_sha256: str
    options: list[str]
    profile_edition: str
    key_fingerprint: str
    dry_run: bool
    files_read: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    per_modality: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    files_per_second: float = 0.0
    started: str = ""
    finished: str = ""
    risk: dict[str, Any] = field(default_factory=dict)
    withheld: str = ""  # where the set went when the risk gate refused it
    input_signatures: dict[str, int] = field(default_factory=dict)  # valid / invalid
    release: dict[str, Any] = field(default_factory=dict)  # manifest digest, ledger entry

    @property
    def exit_code(self) -> int:
        """0: all released or deliberately excluded; 1: anything quarantined or failed, or
        the set withheld by the risk gate."""
        return 1 if self.counts["quarantined"] or self.counts["failed"] or self.withheld else 0


def run_dir_for(output: Path) -> Path:
    return output.parent / f"{output.name}.run"


def discover(root: Path, skip: Path | None = None) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself), streamed in a stable order."""
    if root.is_file():
        yield root
        return
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if skip is None or Path(entry.path).resolve() != skip:
                    subfolders.append(Path(entry.path))
            elif entry.is_file():
                yield Path(entry.path)
        stack.extend(reversed(subfolders))


def _check_paths(opts: RunOptions) -> None:
    source = opts.input.resolve()
    target = opts.output.resolve()
    if not source.exists():
        raise RadguardError(f"{opts.input}: no such file or folder")
    if target == source or source in target.parents:
        raise RadguardError("the output folder must not be inside the input folder")
    if target in source.parents:
        raise RadguardError("the input must not be inside the output folder")
    manifest = run_dir_for(target) / "manifest.jsonl"
    if target.exists() and any(target.iterdir()) and not manifest.exists():
        raise RadguardError(f"{opts.output} is not empty and holds no radguard run to resume")


def run_deid(
    opts: RunOptions,
    policy: Policy,
    keyring: Keyring,
    bus: EventBus | None = None,
    on_progress: Callable[[FileResult], None] | None = None,
) -> RunSummary:
    """De-identify every file under ``opts.input`` into ``opts.output``."""
    _check_paths(opts)
    bus = bus or EventBus()
    pseudo = Pseudonymizer(keyring)
    out = opts.output.resolve()
    run_dir = run_dir_for(out)
    summary = RunSummary(
        __version__,
        policy.name,
        policy.sha256,
        policy.option_names,
        load_table().edition,
        keyring.fingerprint,
        opts.dry_run,
    )
    summary.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    recorder = _release_recorder(opts, keyring)
    consent = None
    if opts.purpose:
        from radguard.govern.disclosure import consent_gate

        consent = consent_gate(
            keyring, opts.purpose, opts.require_consent, opts.consent_registry or None
        )
    job = Job(policy, keyring, out, opts.dry_run, consent=consent)

    done: dict[str, dict[str, Any]] = {}
    manifest_handle = None
    vault = None
    if not opts.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(run_dir, 0o700)
        done = _resume_state(run_dir / "manifest.jsonl", out)
        manifest_handle = (run_dir / "manifest.jsonl").open("a", encoding="utf-8")
        vault = Vault(run_dir / "vault.sqlite", keyring, create=True)
        bus.subscribe(FILE_RELEASED, lambda r: vault.add(r.mappings))  # type: ignore[union-attr]
    for line in done.values():
        _count(summary, line["status"], line.get("modality", ""), 0)
        summary.resumed += 1

    faces = None  # Clean Recognizable Visual Features: deface whole series before the files
    if Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES in policy.options and not opts.dry_run:
        from radguard.deface.pipeline import plan_faces

        # every file, done or not: a series half released before a restart is still
        # defaced whole (outputs are deterministic), never judged from its remaining slices
        inputs = [
            (str(p), pseudo.digest("input-path", str(p)))
            for p in discover(opts.input.resolve(), skip=out)
        ]
        dask = opts.scheduler if opts.executor == "dask" else ""
        faces = plan_faces(inputs, run_dir / "deface", None, opts.workers or 1, dask)
        job = replace(job, face_plan=str(faces.path))

    def tasks() -> Iterator[Task]:
        source = opts.input.resolve()
        for path in discover(source, skip=out):
            digest = pseudo.digest("input-path", str(path))
            if digest in done:
                continue
            yield (faces.substitutes.get(digest, str(path)) if faces else str(path)), digest

    workers = opts.workers or default_workers()
    if opts.executor == "dask":
        if not opts.scheduler:
            raise RadguardError("--executor dask needs --scheduler ADDRESS")
        results = run_dask(tasks(), job, opts.scheduler)
    elif opts.executor == "local":
        results = run_local(tasks(), job, workers)
    else:
        raise RadguardError(f"unknown executor {opts.executor!r} (local or dask)")

    started = time.perf_counter()
    records = _Records(manifest_handle, vault, opts.input.resolve())
    try:
        for result in results:
            if faces is not None and result.digest in faces.originals:
                result.path = faces.originals[result.digest]  # records name the original
            _count(summary, result.status, result.modality, result.size)
            _count_signatures(summary, result.reasons)
            if result.status == "released":
                bus.emit(FILE_RELEASED, result)  # the vault stages its entries here
            else:
                if (
                    opts.quarantine
                    and not opts.dry_run
                    and result.status in ("quarantined", "failed")
                ):
                    try:
                        quarantine_copy(result.path, result.digest, run_dir / "quarantine")
                    except OSError as error:  # e.g. a full disk: say so, keep going
                        result.reasons.append(
                            f"quarantine copy failed: {type(error).__name__} ({error.strerror})"
                        )
                bus.emit(FILE_REJECTED, result)
            records.add(result)
            if on_progress is not None:
                on_progress(result)
    finally:
        records.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    processed = summary.files_read - summary.resumed
    summary.files_per_second = round(processed / summary.seconds, 1) if summary.seconds else 0.0
    summary.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    limit = opts.max_risk if opts.max_risk is not None else policy.risk.max_prosecutor
    if limit is not None and not opts.dry_run and summary.counts["released"]:
        _risk_gate(summary, policy, out, run_dir, limit)
    if recorder is not None and not summary.withheld and summary.counts["released"]:
        summary.release = recorder.complete(out, summary)  # raises: an unrecorded release fails
    if not opts.dry_run:
        _write_atomic(run_dir / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")
    bus.emit(RELEASE_COMPLETED, summary)
    return summary


class _Records:
    """Batched, ordered run records: the vault is committed before the manifest says 'done'.

    Committing (an fsync) per file would serialize the run on the parent process; instead a
    batch of results is committed together. A kill loses at most the last batch's manifest
    lines, and those files are simply processed again on resume (outputs are idempotent).
    """

    _BATCH = 256
    _SECONDS = 1.0

    def __init__(self, handle: Any, vault: Vault | None, root: Path) -> None:
        self.handle = handle
        self.vault = vault
        self.root = root
        self.pending: list[str] = []
        self.last = time.monotonic()

    def add(self, result: FileResult) -> None:
        if self.handle is None:
            return
        line = {
            "input_digest": result.digest,
            "input": _relative(result.path, self.root),
            "status": result.status,
            "output": result.output,
            "modality": result.modality,
            "reasons": result.reasons,
        }
        self.pending.append(json.dumps(line) + "\n")
        if len(self.pending) >= self._BATCH or time.monotonic() - self.last > self._SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.vault is not None:
            self.vault.commit()
        if self.handle is not None and self.pending:
            self.handle.write("".join(self.pending))
            self.handle.flush()
        self.pending.clear()
        self.last = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self.vault is not None:
            self.vault.close()
        if self.handle is not None:
            os.sync()  # outputs were written without a per-file fsync; make the run durable
            os.fsync(self.handle.fileno())
            self.handle.close()


def _release_recorder(opts: RunOptions, keyring: Keyring) -> Any:
    """The governance recorder when the run signs or records its release (keys checked now)."""
    if not (opts.release_to or opts.sign or opts.sign_dicom) or opts.dry_run:
        return None
    from radguard.govern.disclosure import ReleaseRecorder

    recorder = ReleaseRecorder(
        keyring,
        recipient=opts.release_to,
        address=opts.release_address,
        purpose=opts.purpose,
        agreement=opts.agreement,
        legal_basis=opts.legal_basis,
        ledger_url=opts.ledger,
        sign_dicom=opts.sign_dicom,
        workers=opts.workers or default_workers(),
    )
    recorder.check_keys()
    return recorder


def _count_signatures(summary: RunSummary, reasons: list[str]) -> None:
    from radguard.govern.dsig import intake_verdict

    for reason in reasons:
        verdict = intake_verdict(reason)
        if verdict is not None:
            key = "valid" if verdict == "valid" else "invalid"  # unchecked counts as invalid
            summary.input_signatures[key] = summary.input_signatures.get(key, 0) + 1


def _risk_gate(summary: RunSummary, policy: Policy, out: Path, run_dir: Path, limit: float) -> None:
    """Measure the released set; above the limit, withhold all of it (nothing is released)."""
    from radguard.risk import DEFAULT_QIS, assess, collect_records

    qis = policy.risk.quasi_identifiers or DEFAULT_QIS
    report = assess(collect_records(out, qis), qis, population=policy.risk.population)
    summary.risk = {"max_prosecutor_allowed": limit, **report.to_json()}
    summary.risk.pop("records", None)
    summary.risk.pop("highest_risk", None)
    if report.exceeds(limit):
        withheld = run_dir / f"withheld-{time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(out, withheld)  # one rename: the whole set leaves OUT at once
        out.mkdir()
        summary.withheld = str(withheld)
        reason = (
            f"withheld by the risk gate: prosecutor risk {report.prosecutor.highest:.3f} "
            f"above the limit {limit}"
        )
        _rewrite_manifest(run_dir / "manifest.jsonl", "released", "withheld", reason)
        summary.counts["withheld"] = summary.counts.pop("released")
        summary.counts["released"] = 0


def _rewrite_manifest(manifest: Path, old: str, new: str, reason: str) -> None:
    lines = []
    with manifest.open(encoding="utf-8") as handle:
        for text in handle:
            line = json.loads(text)
            if line.get("status") == old:
                line["status"] = new
                line["reasons"] = [reason, *line.get("reasons", [])]
            lines.append(json.dumps(line) + "\n")
    _write_atomic(manifest, "".join(lines))


def _count(summary: RunSummary, status: str, modality: str, size: int) -> None:
    summary.files_read += 1
    summary.counts[status] = summary.counts.get(status, 0) + 1
    summary.bytes_read += size
    if status == "released":
        key = modality or "??"
        summary.per_modality[key] = summary.per_modality.get(key, 0) + 1


def _resume_state(manifest: Path, out: Path) -> dict[str, dict[str, Any]]:
    """Final entries of a previous run; the manifest is rewritten without retried entries."""
    if not manifest.exists():
        return {}
    done: dict[str, dict[str, Any]] = {}
    with manifest.open(encoding="utf-8") as handle:
        for text in handle:
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if line.get("status") == "excluded" or (
                line.get("status") == "released" and looks_complete(out / line["output"])
            ):
                done[line["input_digest"]] = line
            else:
                done.pop(line.get("input_digest", ""), None)
    _write_atomic(manifest, "".join(json.dumps(line) + "\n" for line in done.values()))
    return done


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name
