"""The durable spool: every received instance is on disk (fsync'd) before success is answered.

Layout under the spool folder (mode 0700: it holds originals)::

    incoming/<study>/<instance>.dcm     received, waiting for the study's quiet period
    tmp/                                partial writes (removed at start)
    batches/<batch>/in/<study>/...      a release batch: originals moved here in one rename
    batches/<batch>/out/, out.run/      the pipeline's output and run records
    outbox/<destination>/<entry>/       released studies waiting for (re)delivery, entry.json
    deadletter/<kind>/<entry>/          what could not be released or delivered, reason.json
    records/<batch>.run/                run records of finished batches (manifest, summary, vault)
    status.json                         the running gateway's counters (for `serve status`)

``<study>`` and ``<instance>`` are keyed digests of the Study and SOP Instance UIDs, so folder
names reveal nothing. Every state change is a rename within one file system, followed by an
fsync of the folders involved, so a crash at any point leaves each instance in exactly one
state, and a restart picks up where the gateway stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radguard.errors import RadguardError

_FOLDERS = ("incoming", "tmp", "batches", "outbox", "deadletter", "records")


def fsync_dir(path: Path) -> None:
    """Make a rename or creation in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, fsync, rename over ``path``, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class QuietStudy:
    """A study in ``incoming/`` whose last instance arrived longer than the quiet period ago."""

    key: str
    path: Path
    first_arrival: float
    last_arrival: float
    instances: int


class Spool:
    """The spool folder; one gateway process at a time holds it (an advisory lock)."""

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self._secret = secret
        self._lock = threading.Lock()  # store vs. take: a study folder moves whole
        self._lock_handle: Any = None

    # -- setup ---------------------------------------------------------------------------------
    def open(self, exclusive: bool = True) -> Spool:
        """Create the folders; with ``exclusive``, refuse a spool another gateway is using."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        for name in _FOLDERS:
            (self.root / name).mkdir(exist_ok=True, mode=0o700)
        if exclusive:
            handle = (self.root / "gateway.lock").open("a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as error:
                handle.close()
                raise RadguardError(
                    f"{self.root}: another radguard gateway is using this spool"
                ) from error
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            self._lock_handle = handle
            for leftover in (self.root / "tmp").iterdir():
                _remove(leftover)  # partial writes of a crashed process: never answered
        return self

    def close(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def in_use(self) -> bool:
        """Whether a gateway process holds this spool now."""
        path = self.root / "gateway.lock"
        if not path.exists():
            return False
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False

    def digest(self, purpose: str, value: str) -> str:
        """A keyed, non-reversible folder name for a UID."""
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    # -- receiving -----------------------------------------------------------------------------
    def store(self, data: bytes, study_uid: str, sop_instance_uid: str) -> Path:
        """Write one instance durably into ``incoming/<study>/``; return its path.

        The bytes are fsync'd under a temporary name, renamed into the study folder and the
        folder is fsync'd: when this returns, a crash cannot lose the instance. The same
        instance received twice replaces the first copy (delivery is idempotent anyway).
        """
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        study = self.digest("study", study_uid)
        name = self.digest("instance", sop_instance_uid) + ".dcm"
        with self._lock:
            folder = self.root / "incoming" / study
            created = not folder.exists()
            if created:
                folder.mkdir(mode=0o700)
            target = folder / name
            os.replace(tmp, target)
            os.utime(folder)  # the study's last arrival (the quiet period counts from here)
            fsync_dir(folder)
            if created:
                fsync_dir(folder.parent)
        return target

    def store_rejected(self, data: bytes, reason: str) -> Path:
        """Keep an instance refused at reception (it could not be parsed) with the reason."""
        entry = self.root / "deadletter" / "received" / f"{time.strftime('%Y%m%dT%H%M%S')}-"
        entry = entry.with_name(entry.name + uuid.uuid4().hex[:8])
        entry.mkdir(parents=True, mode=0o700)
        path = entry / "instance.dcm"
        with path.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        write_json_atomic(
            entry / "reason.json",
            {"kind": "received", "reason": reason, "at": _now(), "files": 1},
        )
        return entry

    # -- batching ------------------------------------------------------------------------------
    def quiet_studies(self, quiet_period_s: float, now: float | None = None) -> list[QuietStudy]:
        """Studies in ``incoming/`` with no new instance for ``quiet_period_s`` seconds."""
        now = time.time() if now is None else now
        found = []
        for folder in sorted((self.root / "incoming").iterdir()):
            try:
                last = folder.stat().st_mtime
                files = [f for f in folder.iterdir() if f.suffix == ".dcm"]
            except FileNotFoundError:
                continue
            if not files:
                continue
            if now - last >= quiet_period_s:
                first = min((f.stat().st_mtime for f in files), default=last)
                found.append(QuietStudy(folder.name, folder, first, last, len(files)))
        return found

    def take(self, studies: list[QuietStudy], batch_id: str, quiet_period_s: float) -> Path:
        """Move quiet studies into a new batch (each in one rename); return the batch folder.

        Each study is checked again under the lock: one that received an instance since it
        was listed stays in ``incoming/`` for a later batch."""
        batch = self.root / "batches" / batch_id
        (batch / "in").mkdir(parents=True, mode=0o700)
        taken = []
        with self._lock:
            for study in studies:
                try:
                    last = study.path.stat().st_mtime
                    if time.time() - last < quiet_period_s:
                        continue
                    count = sum(1 for f in study.path.iterdir() if f.suffix == ".dcm")
                    os.rename(study.path, batch / "in" / study.key)
                except FileNotFoundError:
                    continue
                taken.append(
                    {
                        "key": study.key,
                        "first_arrival": study.first_arrival,
                        "last_arrival": last,
                        "instances": count,
                    }
                )
            fsync_dir(batch / "in")
            fsync_dir(self.root / "incoming")
        write_json_atomic(batch / "batch.json", {"id": batch_id, "studies": taken, "at": _now()})
        fsync_dir(batch.parent)
        return batch

    def batches(self) -> list[Path]:
        return sorted(p for p in (self.root / "batches").iterdir() if p.is_dir())

    # -- delivery ------------------------------------------------------------------------------
    def outbox(self, destination: str) -> Path:
        folder = self.root / "outbox" / destination
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def entries(self, destination: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Complete outbox entries (with their entry.json), oldest first."""
        folder = self.outbox(destination)
        listed = []
        for entry in folder.iterdir():
            if entry.name.startswith("."):
                continue  # an entry being built (visible only once renamed)
            meta = read_json(entry / "entry.json")
            if meta is not None:
                listed.append((float(meta.get("created", 0.0)), entry.name, entry, meta))
        for _, _, entry, meta in sorted(listed, key=lambda x: (x[0], x[1])):
            yield entry, meta

    def dead_letter(
        self, source: Path | None, kind: str, name: str, reason: dict[str, Any]
    ) -> Path:
        """Move ``source`` (a file or folder, may be None) into ``deadletter/<kind>/<name>``."""
        folder = self.root / "deadletter" / kind
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry = folder / name
        if entry.exists():
            entry = folder / f"{name}-{uuid.uuid4().hex[:8]}"
        if source is not None and source.is_dir():
            os.rename(source, entry)
        else:
            entry.mkdir(mode=0o700)
            if source is not None:
                os.rename(source, entry / source.name)
        write_json_atomic(entry / "reason.json", {"kind": kind, "at": _now(), **reason})
        fsync_dir(folder)
        return entry

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead-letter entry's reason (newest last)."""
        found = []
        root = self.root / "deadletter"
        for kind in sorted(p for p in root.iterdir() if p.is_dir()):
            for entry in sorted(kind.iterdir()):
                reason = read_json(entry / "reason.json")
                if reason is not None:
                    found.append({"entry": str(entry.relative_to(root)), **reason})
        return sorted(found, key=lambda r: str(r.get("at", "")))

    def depth(self) -> dict[str, int]:
        """Queue depths: instances waiting in incoming, batches in progress, outbox entries."""
        incoming = sum(
            1 for study in (self.root / "incoming").iterdir() for _ in study.glob("*.dcm")
        )
        outbox = sum(
            1
            for dest in (self.root / "outbox").iterdir()
            for entry in dest.iterdir()
            if not entry.name.startswith(".") and (entry / "entry.json").exists()
        )
        return {
            "incoming_instances": incoming,
            "batches": len(self.batches()),
            "outbox_studies": outbox,
        }


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    _remove(path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
