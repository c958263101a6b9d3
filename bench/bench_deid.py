"""Header de-identification throughput: radguard against a plain pydicom loop and other tools.

Run from the repository root::

    .venv/bin/python bench/bench_deid.py            # full run (a few minutes)
    .venv/bin/python bench/bench_deid.py --quick    # smoke run with small corpora
    .venv/bin/python bench/bench_deid.py --setup-tools   # create bench/.venv-tools first
    .venv/bin/python bench/bench_deid.py --profile 300   # cProfile: Engine loop and run_deid

To measure one commit while the working tree changes, put a snapshot of it first on the path:
``git archive HEAD src | tar -x -C /tmp/snap`` then ``PYTHONPATH=/tmp/snap/src`` before the
command (the ``radguard`` command-line runs inherit it; the other tools' runs do not).

Everything is measured in the same run, on the same machine, over the same files:

* a corpus of small CT files and one of larger MR/US files, built in ``bench/work/`` from the
  files that ship inside pydicom (nothing is downloaded); every copy gets its own patient,
  study, series and instance identifiers, and identifying values are planted in every file;
* the reference: a plain pydicom ``dcmread`` + ``save_as`` loop, in one process and with a
  process pool over all cores;
* radguard: the in-process ``Engine`` loop (the same loop plus ``engine.apply``), ``run_deid``
  with one worker and with all cores, and the ``radguard deid`` command line;
* dicognito, dicom-anonymizer and deid, installed in ``bench/.venv-tools``, each run through
  its command line over the same corpus (wall clock, interpreter start included), one run
  each, like the ``radguard deid`` runs they are compared with;
* CPU time (user + system, workers included) next to wall time: the machine may be shared,
  and CPU time is less sensitive to other work than wall time (not insensitive);
* peak resident memory of ``radguard deid`` at two corpus sizes (should be flat);
* what each tool's output still holds of the planted identifiers, and which research
  attributes it keeps.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from radguard.deid import Engine, Pseudonymizer
from radguard.deid.keys import Keyring
from radguard.pipeline import RunOptions, run_deid
from radguard.settings import load_policy

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "work"
TOOLS_VENV = BENCH / ".venv-tools"
OUT = WORK / "out"
RADGUARD_BIN = Path(sys.executable).parent / "radguard"
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # never get_testdata_file
CORPUS_VERSION = 3
KEY = Keyring(b"\x01" * 32)
TOOLS = ("dicognito", "dicom-anonymizer", "deid")

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
FRAME_TIME = Tag(0x0018, 0x1063)


# -- corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """The values planted in one corpus file (indexed by the number hidden in its pixels)."""

    index: int
    kind: str
    patient: int
    study: int
    name: str
    patient_id: str
    accession: str
    institution: str
    birth_date: str
    sex: str
    age: str
    study_date: str
    slice_thickness: str | None
    pixel_spacing: list[float] | None

    def identifying(self) -> dict[str, list[str]]:
        """Byte strings that must not survive de-identification, by category."""
        family, given = self.name.split("^")
        return {
            "name": [family, given],
            "patient_id": [self.patient_id],
            "birth_date": [self.birth_date],
            "institution": [self.institution],
            "accession": [self.accession],
        }


def planted_for(kind: str, index: int, per_patient: int) -> Planted:
    """Deterministic identifying and research values for file ``index`` of a corpus."""
    patient = index // per_patient
    study = (index % per_patient) * 2 // per_patient  # two studies per patient
    first = dt.date(2019, 1, 1) + dt.timedelta(days=patient % 300)
    date = first + dt.timedelta(days=(30 + patient % 60) * study)
    birth = dt.date(1930 + patient % 20, 1 + patient % 12, 1 + (patient * 7) % 28)
    return Planted(
        index=index,
        kind=kind,
        patient=patient,
        study=study,
        name=f"Zzname{patient:05d}^Zzgiven{patient:05d}",
        patient_id=f"ZZPID{patient:05d}",
        accession=f"ZZACC{patient:05d}{study}",
        institution=f"ZZINST Hospital {patient:05d}",
        birth_date=birth.strftime("%Y%m%d"),
        sex="F" if patient % 2 else "M",
        age=f"{30 + patient % 50:03d}Y",
        study_date=date.strftime("%Y%m%d"),
        slice_thickness=None,
        pixel_spacing=None,
    )


def _template(kind: str) -> Dataset:
    """A source dataset from pydicom's bundled test files, enlarged for the larger kinds."""
    if kind == "ct":
        return pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    if kind == "mr512":  # MR_small (64x64) tiled to a 512x512 MR image (512 KiB of pixels)
        ds = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
        tiled = np.tile(ds.pixel_array, (8, 8))
        ds.Rows, ds.Columns = tiled.shape
        ds.PixelData = tiled.tobytes()
        return ds
    if kind == "us8":  # examples_rgb_color (US, 320x240 RGB) as an 8-frame US multi-frame
        ds = pydicom.dcmread(TEST_FILES / "examples_rgb_color.dcm")
        ds.SOPClassUID = US_MULTIFRAME
        ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
        ds.NumberOfFrames = 8
        ds.FrameTime = "33.3"
        ds.FrameIncrementPointer = FRAME_TIME
        ds.PixelData = bytes(ds.PixelData) * 8
        return ds
    if kind == "mrovl":  # examples_overlay: MR 484x300 with an overlay plane (group 6000)
        return pydicom.dcmread(TEST_FILES / "examples_overlay.dcm")
    raise ValueError(kind)


def _large_kind(index: int) -> str:
    return ("mr512", "mr512", "mr512", "mr512", "us8", "us8", "us8", "mrovl", "mrovl", "mrovl")[
        index % 10
    ]


@dataclass(frozen=True)
class CorpusSpec:
    """A corpus: ``count`` files of ``kind`` (``large`` mixes MR and US), grouped by patient."""

    name: str
    kind: str
    count: int
    per_patient: int

    @property
    def folder(self) -> Path:
        return WORK / "corpus" / self.name

    @property
    def manifest(self) -> Path:
        return WORK / "corpus" / f"{self.name}.json"


def _write_chunk(args: tuple[CorpusSpec, list[int]]) -> list[dict[str, Any]]:
    """Write corpus files ``indices`` (a pool task): one template per kind, mutated per copy."""
    spec, indices = args
    templates: dict[str, Dataset] = {}
    base_pixels: dict[str, bytes] = {}
    rows = []
    for index in indices:
        kind = spec.kind if spec.kind != "large" else _large_kind(index)
        if kind not in templates:
            templates[kind] = _template(kind)
            base_pixels[kind] = bytes(templates[kind].PixelData)
        ds = templates[kind]
        planted = planted_for(kind, index, spec.per_patient)
        ds.PatientName = planted.name
        ds.PatientID = planted.patient_id
        ds.PatientBirthDate = planted.birth_date
        ds.PatientSex = planted.sex
        ds.PatientAge = planted.age
        ds.InstitutionName = planted.institution
        ds.AccessionNumber = planted.accession
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            setattr(ds, keyword, planted.study_date)
        ds.StudyInstanceUID = generate_uid(
            entropy_srcs=[spec.name, str(planted.patient), str(planted.study), "study"]
        )
        ds.SeriesInstanceUID = generate_uid(
            entropy_srcs=[spec.name, str(planted.patient), str(planted.study), kind, "series"]
        )
        sop = generate_uid(entropy_srcs=[spec.name, str(index), "sop"])
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = index % spec.per_patient + 1
        # The file's index in the first 4 pixel bytes: header tools keep pixels, so every
        # output can be matched to the values planted in its input whatever it is named.
        ds.PixelData = struct.pack("<I", index) + base_pixels[kind][4:]
        ds.save_as(spec.folder / f"{index:06d}.dcm", enforce_file_format=True)
        thickness = ds.get("SliceThickness")
        spacing = ds.get("PixelSpacing")
        row = asdict(planted)
        row["slice_thickness"] = str(thickness) if thickness not in (None, "") else None
        row["pixel_spacing"] = [float(v) for v in spacing] if spacing else None
        rows.append(row)
    return rows


def build_corpus(spec: CorpusSpec, workers: int) -> list[Planted]:
    """Build ``spec`` under bench/work/corpus (reused when already built at this version)."""
    if spec.manifest.exists():
        saved = json.loads(spec.manifest.read_text())
        on_disk = sum(1 for _ in spec.folder.iterdir()) if spec.folder.exists() else -1
        if saved.get("version") == CORPUS_VERSION and on_disk == spec.count:
            return [Planted(**row) for row in saved["files"]]
    shutil.rmtree(spec.folder, ignore_errors=True)
    spec.folder.mkdir(parents=True)
    started = time.perf_counter()
    indices = list(range(spec.count))
    chunks = [(spec, indices[i : i + 250]) for i in range(0, len(indices), 250)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        rows = [row for chunk in pool.map(_write_chunk, chunks) for row in chunk]
    spec.manifest.write_text(json.dumps({"version": CORPUS_VERSION, "files": rows}))
    print(f"  built {spec.name}: {spec.count} files in {time.perf_counter() - started:.1f} s")
    return [Planted(**row) for row in rows]


def corpus_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


# -- measurements --------------------------------------------------------------------------


@dataclass
class Result:
    """One timed run over one corpus."""

    corpus: str
    method: str
    files: int
    seconds: float
    ok: bool = True
    processes: int = 1
    peak_rss_mib: float | None = None
    note: str = ""
    runs: list[float] = field(default_factory=list)
    cpu_seconds: float | None = None  # user + system, this process and its workers

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds and self.ok else 0.0

    @property
    def files_per_cpu_s(self) -> float:
        return self.files / self.cpu_seconds if self.cpu_seconds and self.ok else 0.0


def cpu_now() -> float:
    """CPU seconds used so far by this process and by its children that have been waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def clocked(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), cpu_now()
    run()
    return time.perf_counter() - wall, cpu_now() - cpu


def _fresh(folder: Path) -> Path:
    for path in (folder, folder.parent / f"{folder.name}.run"):
        shutil.rmtree(path, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def plain_loop(files: Sequence[Path], out: Path, fsync: bool = False) -> None:
    """The reference: read every file with pydicom and write it back, one process."""
    out.mkdir(parents=True)
    for path in files:
        ds = pydicom.dcmread(path)
        if fsync:
            with open(out / path.name, "wb") as handle:
                ds.save_as(handle, enforce_file_format=True)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            ds.save_as(out / path.name, enforce_file_format=True)


def engine_loop(files: Sequence[Path], out: Path, engine: Engine) -> None:
    """The same loop with radguard's header engine in it: read, ``engine.apply``, write."""
    out.mkdir(parents=True)
    for path in files:
        ds = pydicom.dcmread(path)
        engine.apply(ds)
        ds.save_as(out / path.name, enforce_file_format=True)


def _plain_one(task: tuple[Path, Path]) -> None:
    source, target = task
    pydicom.dcmread(source).save_as(target, enforce_file_format=True)


def plain_pool(files: Sequence[Path], out: Path, workers: int) -> None:
    """The reference over all cores: a process pool running the plain loop (pool start timed)."""
    out.mkdir(parents=True)
    tasks = [(path, out / path.name) for path in files]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for _ in pool.imap_unordered(_plain_one, tasks, chunksize=16):
            pass


def best(times: int, run: Callable[[], Result]) -> Result:
    """The fastest of ``times`` runs (all run times are kept in ``runs``)."""
    results = [run() for _ in range(times)]
    fastest = min(results, key=lambda r: r.seconds if r.ok else float("inf"))
    fastest.runs = [r.seconds for r in results]
    cpu = [r.cpu_seconds for r in results if r.cpu_seconds is not None]
    fastest.cpu_seconds = min(cpu) if cpu else None
    return fastest


def run_command(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> tuple:
    """Run a command to completion: (wall s, exit code, CPU s, peak RSS MiB of its largest process).

    CPU time and peak come from GNU time (``%U %S %M``: the command and the processes it waited
    for, i.e. its workers; ``%M`` is the largest single resident set). ``os.wait4`` from this
    process would not do: a child forked from this large process counts its pre-exec pages.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    usage_file = log.with_suffix(".usage")
    usage_file.unlink(missing_ok=True)
    timer = Path("/usr/bin/time")
    wrapped = [str(timer), "-f", "%U %S %M", "-o", str(usage_file), *cmd] if timer.exists() else cmd
    with log.open("wb") as handle:
        started = time.perf_counter()
        code = subprocess.run(
            wrapped, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode
        seconds = time.perf_counter() - started
    cpu = rss = None
    if usage_file.exists():  # "Command exited with non-zero status N" may come first
        fields = usage_file.read_text().split()[-3:]
        if len(fields) == 3:
            cpu = float(fields[0]) + float(fields[1])
            rss = int(fields[2]) / 1024
    return seconds, code, cpu, rss


def count_outputs(folder: Path) -> int:
    if not folder.exists():
        return 0
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _tail(log: Path, lines: int = 3) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(line.strip() for line in text[-lines:])[:300]


def code_version() -> dict[str, str]:
    """Which radguard is measured: its version, where it is imported from, the git state."""
    import radguard

    path = Path(radguard.__file__).resolve().parent
    git = subprocess.run(
        ["git", "-C", str(path), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    state = git.stdout.strip() or "not a git checkout (e.g. a snapshot of a commit)"
    return {"version": radguard.__version__, "path": str(path), "git": state}


def tool_versions() -> dict[str, str]:
    """Installed versions of the other tools (empty when bench/.venv-tools is missing)."""
    python = TOOLS_VENV / "bin" / "python"
    if not python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        f"for name in {[*TOOLS, 'pydicom']!r}:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def tool_command(tool: str, source: Path, out: Path) -> list[str]:
    """Each tool's own command line, as its documentation shows it."""
    bin_dir = TOOLS_VENV / "bin"
    if tool == "dicognito":
        # The `dicognito` console script of 0.19.0 is broken (main() needs an argument);
        # `python -m dicognito` is the documented alternative and runs the same code.
        return [str(bin_dir / "python"), "-m", "dicognito", str(source), "-o", str(out), "-q"]
    if tool == "dicom-anonymizer":
        out.mkdir(parents=True, exist_ok=True)  # it needs an existing output folder
        return [str(bin_dir / "dicom-anonymizer"), str(source), str(out)]
    if tool == "deid":  # default recipe; get identifiers and put replacements
        out.mkdir(parents=True, exist_ok=True)  # it needs an existing output folder too
        return [
            str(bin_dir / "deid"),
            "--quiet",
            "--outfolder",
            str(out),
            "identifiers",
            "--action",
            "all",
            "--input",
            str(source),
        ]
    raise ValueError(tool)


def run_tool(tool: str, source: Path, corpus: str, n: int, out: Path) -> Result:
    _fresh(out)
    cmd = tool_command(tool, source, out)
    log = WORK / "logs" / f"{tool}-{corpus}.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # their own venv only
    seconds, code, cpu, rss = run_command(cmd, log, env)
    made = count_outputs(out)
    result = Result(corpus, f"{tool} (CLI)", n, seconds, peak_rss_mib=rss, cpu_seconds=cpu)
    if code != 0 or made < n:
        result.ok = made > 0
        result.note = f"exit {code}, {made}/{n} outputs; log: {_tail(log)}"
    return result


def run_radguard_cli(source: Path, corpus: str, n: int, out: Path, workers: int) -> Result:
    key = WORK / "bench.key"
    env = dict(os.environ, RADGUARD_HOME=str(WORK / "radguard-home"))
    if not key.exists():
        subprocess.run([str(RADGUARD_BIN), "key", "new", "--out", str(key)], check=True, env=env)
    _fresh(out)
    cmd = [
        str(RADGUARD_BIN),
        "deid",
        str(source),
        str(out),
        "--workers",
        str(workers),
        "--key-file",
        str(key),
    ]
    log = WORK / "logs" / f"radguard-{corpus}-w{workers}.log"
    seconds, code, cpu, rss = run_command(cmd, log, env)
    made = count_outputs(out)
    result = Result(
        corpus, f"radguard deid (CLI, {workers} worker(s))", n, seconds, True, workers, rss
    )
    result.cpu_seconds = cpu
    if code != 0 or made < n:
        result.ok = made > 0
        result.note = f"exit {code}, {made}/{n} released"
    return result


def run_radguard_api(source: Path, corpus: str, n: int, out: Path, workers: int) -> Result:
    policy = load_policy("research")
    _fresh(out)
    opts = RunOptions(input=source, output=out, workers=workers)
    summary = None

    def run() -> None:
        nonlocal summary
        summary = run_deid(opts, policy, KEY)

    seconds, cpu = clocked(run)
    assert summary is not None
    result = Result(corpus, f"radguard run_deid ({workers} worker(s))", n, seconds, True, workers)
    result.cpu_seconds = cpu
    if summary.counts["released"] != n:
        result.note = f"counts {summary.counts}"
    return result


# -- protection ----------------------------------------------------------------------------


def _as_date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def protection(out: Path, planted: Sequence[Planted]) -> dict[str, Any]:
    """What an output folder still holds of the planted identifiers, and what it kept.

    Each output is matched to its input by the index hidden in the first pixel bytes; its raw
    bytes are searched for that input's own planted values.
    """
    by_index = {p.index: p for p in planted}
    found = dict.fromkeys(("name", "patient_id", "birth_date", "institution", "accession"), 0)
    kept = dict.fromkeys(("PatientSex", "PatientAge", "SliceThickness", "PixelSpacing"), 0)
    possible = dict.fromkeys(kept, 0)
    dates: dict[int, dict[int, dt.date | None]] = {}
    matched = 0
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        data = path.read_bytes()
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            index = struct.unpack("<I", bytes(ds.PixelData)[:4])[0]
        except (InvalidDicomError, AttributeError, KeyError, ValueError, struct.error):
            continue  # not an image this bench wrote
        source = by_index.get(index)
        if source is None:
            continue
        matched += 1
        for category, values in source.identifying().items():
            if any(v.encode() in data for v in values):
                found[category] += 1
        checks = {
            "PatientSex": (source.sex, str(ds.get("PatientSex", "") or "")),
            "PatientAge": (source.age, str(ds.get("PatientAge", "") or "")),
        }
        if source.slice_thickness is not None:
            value = ds.get("SliceThickness")
            checks["SliceThickness"] = (
                float(source.slice_thickness),
                float(value) if value not in (None, "") else None,
            )
        if source.pixel_spacing is not None:
            value = ds.get("PixelSpacing")
            checks["PixelSpacing"] = (
                source.pixel_spacing,
                [float(v) for v in value] if value else None,
            )
        for name, (want, got) in checks.items():
            possible[name] += 1
            kept[name] += want == got
        dates.setdefault(source.patient, {})[source.study] = _as_date(
            str(ds.get("StudyDate", "") or "")
        )
    # Study date interval: kept when the days between a patient's two studies are unchanged.
    first = {p.patient: p for p in planted if p.study == 0}
    second = {p.patient: p for p in planted if p.study == 1}
    intervals = kept_intervals = 0
    for patient, studies in dates.items():
        if patient not in first or patient not in second:
            continue
        intervals += 1
        a, b = studies.get(0), studies.get(1)
        want = (_as_date(second[patient].study_date) - _as_date(first[patient].study_date)).days  # type: ignore[operator]
        if a is not None and b is not None and (b - a).days == want:
            kept_intervals += 1
    return {
        "outputs": matched,
        "identifying_found": found,
        "research_kept": kept,
        "research_possible": possible,
        "study_interval_kept": kept_intervals,
        "study_interval_patients": intervals,
    }


# -- report --------------------------------------------------------------------------------


def _fmt_rss(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"


def print_table(results: Iterable[Result], sizes: dict[str, int]) -> None:
    head = f"{'corpus':<10} {'method':<42} {'files':>6} {'wall s':>7} {'files/s':>8} {'MB/s':>6}"
    print(head + f" {'CPU s':>6} {'f/CPU-s':>7} {'RSS MiB':>7}  note")
    print("-" * (len(head) + 30))
    for r in results:
        mb = sizes.get(r.corpus, 0) / 1e6
        rate = f"{r.files_per_s:8.1f}" if r.ok else f"{'failed':>8}"
        mbs = f"{mb / r.seconds:6.1f}" if r.ok and r.seconds else f"{'-':>6}"
        cpu = f"{r.cpu_seconds:6.2f}" if r.cpu_seconds is not None else f"{'-':>6}"
        per_cpu = f"{r.files_per_cpu_s:7.1f}" if r.files_per_cpu_s else f"{'-':>7}"
        print(
            f"{r.corpus:<10} {r.method:<42} {r.files:>6} {r.seconds:7.2f} {rate} {mbs}"
            f" {cpu} {per_cpu} {_fmt_rss(r.peak_rss_mib):>7}  {r.note}"
        )


def ratio(a: Result | None, b: Result | None, cpu: bool = False) -> float | None:
    """a's throughput over b's: files per wall second, or per CPU second with ``cpu``."""
    if a is None or b is None:
        return None
    x, y = (a.files_per_cpu_s, b.files_per_cpu_s) if cpu else (a.files_per_s, b.files_per_s)
    return x / y if x and y else None


def _ratio_text(value: float | None, target: float, cpu: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.2f}x wall"
    if cpu is not None:
        text += f", {cpu:.2f}x CPU"
    met = "met" if value >= target else "NOT met"
    return f"{text} (target >= {target}x: {met})"


def _print_profile(profiler: cProfile.Profile, title: str, top: int) -> None:
    """The top entries of a profile, by cumulative and by own time (radguard, pydicom, I/O)."""
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\ncProfile: {title}: {total:.2f} s in total (under the profiler)")
    rows = []
    for (filename, line, func), (_cc, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "radguard" in filename or "pydicom" in filename:
            short = filename.split("site-packages/")[-1].split("src/")[-1]
            rows.append((cum, own, calls, f"{short}:{line}({func})"))
        elif filename == "~" and any(k in func for k in ("fsync", "commit", "link", "open")):
            rows.append((cum, own, calls, func))  # the I/O a pipeline adds
    print(f"\nTop {top} by cumulative time:")
    print(f"{'cum s':>7} {'%':>5} {'own s':>7} {'calls':>9}  function")
    for cum, own, calls, name in sorted(rows, reverse=True)[:top]:
        print(f"{cum:7.3f} {100 * cum / total:5.1f} {own:7.3f} {calls:9d}  {name}")
    print(f"\nTop {top} by own time:")
    print(f"{'own s':>7} {'%':>5} {'cum s':>7} {'calls':>9}  function")
    for cum, own, calls, name in sorted(rows, key=lambda r: r[1], reverse=True)[:top]:
        print(f"{own:7.3f} {100 * own / total:5.1f} {cum:7.3f} {calls:9d}  {name}")


def profile_radguard(folder: Path, count: int, top: int = 15) -> None:
    """cProfile of the single-core Engine loop and of run_deid with one worker."""
    files = _files(folder)[:count]
    out = OUT / "profile"
    engine = Engine(load_policy("research"), Pseudonymizer(KEY))
    engine_loop(files[:5], _fresh(out), engine)  # warm caches (rules, tables) outside
    _fresh(out)
    profiler = cProfile.Profile()
    profiler.enable()
    engine_loop(files, out, engine)
    profiler.disable()
    _print_profile(profiler, f"Engine loop over {len(files)} files", top)

    subset = WORK / "profile-input"  # run_deid takes a folder: the same files, hard-linked
    shutil.rmtree(subset, ignore_errors=True)
    subset.mkdir(parents=True)
    for path in files:
        os.link(path, subset / path.name)
    policy = load_policy("research")
    _fresh(out)
    profiler = cProfile.Profile()
    profiler.enable()
    run_deid(RunOptions(input=subset, output=out, workers=1), policy, KEY)
    profiler.disable()
    _print_profile(profiler, f"run_deid (1 worker) over {len(files)} files", top)
    shutil.rmtree(subset, ignore_errors=True)
    _fresh(out)


def measure_corpus(
    spec: CorpusSpec,
    engine: Engine,
    versions: dict[str, str],
    sizes: dict[str, int],
    cores: int,
    repeat: int,
    skip_tools: bool,
) -> list[Result]:
    """Every throughput measurement over one corpus."""
    files = _files(spec.folder)
    n = len(files)
    mb = sizes[spec.name] / 1e6
    print(f"\n== {spec.name}: {n} files, {mb:.1f} MB ({mb / n * 1000:.0f} kB/file)")
    results: list[Result] = []
    engine_loop(files[:5], _fresh(OUT / "warm"), engine)  # warm-up (rule tables), untimed
    # The two single-process loops alternate, so that drift on the machine hits both alike.
    plain: list[tuple[float, float]] = []
    engined: list[tuple[float, float]] = []
    for _ in range(repeat):
        plain.append(clocked(lambda: plain_loop(files, _fresh(OUT / "plain"))))
        engined.append(clocked(lambda: engine_loop(files, _fresh(OUT / "engine"), engine)))
    fsynced = [clocked(lambda: plain_loop(files, _fresh(OUT / "plain-fsync"), fsync=True))]
    pooled = [
        clocked(lambda: plain_pool(files, _fresh(OUT / "pool"), cores)) for _ in range(repeat)
    ]
    name = spec.name
    for method, runs, processes in (
        ("pydicom read+write loop (1 process)", plain, 1),
        ("radguard Engine loop (1 process)", engined, 1),
        ("pydicom loop + fsync per file (1 process)", fsynced, 1),
        (f"pydicom read+write pool ({cores} processes)", pooled, cores),
    ):
        walls = [wall for wall, _ in runs]
        results.append(
            Result(
                name,
                method,
                n,
                min(walls),
                processes=processes,
                runs=walls,
                cpu_seconds=min(cpu for _, cpu in runs),
            )
        )
    # Whole runs of run_deid: best of two in a full run (the machine is shared).
    again = 1 if repeat == 1 else 2
    for workers in sorted({1, cores}):
        folder = OUT / f"rg-api-w{workers}"
        results.append(
            best(again, partial(run_radguard_api, spec.folder, name, n, folder, workers))
        )
    # Command lines (radguard and the other tools): one run each, the same for all.
    for workers in sorted({1, cores}):
        folder = OUT / f"rg-cli-{name}-w{workers}"
        results.append(run_radguard_cli(spec.folder, name, n, folder, workers))
    if not skip_tools:
        for tool in TOOLS:
            if tool not in versions:
                note = "not installed in bench/.venv-tools (--setup-tools)"
                results.append(Result(name, f"{tool} (CLI)", n, 0.0, False, note=note))
                continue
            results.append(run_tool(tool, spec.folder, name, n, OUT / f"{tool}-{name}"))
    for folder in (
        "warm",
        "plain",
        "engine",
        "plain-fsync",
        "pool",
        "rg-api-w1",
        f"rg-api-w{cores}",
    ):
        _fresh(OUT / folder)
    print_table(results, sizes)
    return results


def setup_tools() -> None:
    """Create bench/.venv-tools with the other tools, from PyPI."""
    subprocess.run(["python3", "-m", "venv", str(TOOLS_VENV)], check=True)
    pip = [str(TOOLS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *TOOLS], check=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpora (smoke run)")
    parser.add_argument("--skip-tools", action="store_true", help="no dicognito/deid/...")
    parser.add_argument("--skip-memory", action="store_true", help="no large-corpus RSS run")
    parser.add_argument("--setup-tools", action="store_true", help="create bench/.venv-tools")
    parser.add_argument("--profile", type=int, metavar="N", help="only profile N CT files")
    parser.add_argument("--json", type=Path, default=WORK / "results.json")
    args = parser.parse_args(argv)

    if args.setup_tools:
        setup_tools()
    cores = len(os.sched_getaffinity(0))
    quick = args.quick
    small = CorpusSpec("ct-200" if quick else "ct-1000", "ct", 200 if quick else 1000, 10)
    large = CorpusSpec("mrus-20" if quick else "mrus-100", "large", 20 if quick else 100, 4)
    big = CorpusSpec("ct-2000" if quick else "ct-10000", "ct", 2000 if quick else 10000, 10)
    repeat = 1 if quick else 3
    load_start = os.getloadavg()
    print(
        f"radguard bench: {platform.processor() or platform.machine()}, {cores} cores, "
        f"Python {platform.python_version()}, pydicom {pydicom.__version__}, "
        f"load average {load_start[0]:.2f} (other work on the machine skews every figure)"
    )
    code = code_version()
    print(f"radguard {code['version']} from {code['path']} ({code['git']})")
    print("building corpora (from pydicom's bundled test files) ...")
    planted = {spec.name: build_corpus(spec, cores) for spec in (small, large)}
    if args.profile:
        profile_radguard(small.folder, args.profile)
        return 0

    versions = tool_versions() if not args.skip_tools else {}
    sizes = {spec.name: corpus_bytes(spec.folder) for spec in (small, large)}
    results: list[Result] = []
    policy = load_policy("research")
    engine = Engine(policy, Pseudonymizer(KEY))
    for spec in (small, large):
        results += measure_corpus(spec, engine, versions, sizes, cores, repeat, args.skip_tools)

    memory: list[Result] = []
    if not args.skip_memory:
        print(f"\n== peak memory: radguard deid ({cores} workers) at {small.count} and {big.count}")
        build_corpus(big, cores)
        sizes[big.name] = corpus_bytes(big.folder)
        at_small = [
            r
            for r in results
            if r.corpus == small.name and r.method == f"radguard deid (CLI, {cores} worker(s))"
        ]
        memory += at_small
        memory.append(run_radguard_cli(big.folder, big.name, big.count, OUT / "rg-cli-big", cores))
        shutil.rmtree(OUT / "rg-cli-big", ignore_errors=True)
        print_table(memory, sizes)

    print("\n== protection (planted identifiers still in the output bytes; research kept)")
    protect: dict[str, dict[str, Any]] = {}
    for spec in (small, large):
        outputs = {
            "input (control)": spec.folder,
            "radguard": OUT / f"rg-cli-{spec.name}-w{cores}",
            **{tool: OUT / f"{tool}-{spec.name}" for tool in TOOLS if tool in versions},
        }
        for label, folder in outputs.items():
            if folder.exists():
                protect[f"{spec.name}/{label}"] = protection(folder, planted[spec.name])
    print_protection(protect)

    print("\n== ratios")
    summary = ratios(results, small, large, cores)
    for line in summary:
        print(line)
    shutil.rmtree(OUT, ignore_errors=True)
    load_end = os.getloadavg()
    print(f"load average at the end: {load_end[0]:.2f} (1 min), {load_end[1]:.2f} (5 min)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": {
                    "cores": cores,
                    "python": platform.python_version(),
                    "pydicom": pydicom.__version__,
                    "platform": platform.platform(),
                    "load_average_start": load_start,
                    "load_average_end": load_end,
                },
                "radguard": code,
                "tools": versions,
                "sizes": sizes,
                "results": [asdict(r) | {"files_per_s": r.files_per_s} for r in results],
                "memory": [asdict(r) for r in memory],
                "protection": protect,
                "ratios": summary,
            },
            indent=2,
        )
    )
    print(f"\nresults: {args.json}")
    return 0


def print_protection(protect: dict[str, dict[str, Any]]) -> None:
    cats = ("name", "patient_id", "birth_date", "institution", "accession")
    head = f"{'output':<30} {'files':>5} " + " ".join(f"{c[:10]:>10}" for c in cats)
    print(head + "  | Sex  Age  SliceTh PixSp  interval")
    for label, p in protect.items():
        found = " ".join(f"{p['identifying_found'][c]:>10}" for c in cats)
        kept, possible = p["research_kept"], p["research_possible"]
        research = " ".join(
            f"{kept[k]}/{possible[k]}" if possible[k] else "-"
            for k in ("PatientSex", "PatientAge", "SliceThickness", "PixelSpacing")
        )
        interval = f"{p['study_interval_kept']}/{p['study_interval_patients']}"
        print(f"{label:<30} {p['outputs']:>5} {found}  | {research}  {interval}")


def ratios(results: list[Result], small: CorpusSpec, large: CorpusSpec, cores: int) -> list[str]:
    """The issue's targets, one line each, per corpus."""
    lines = []
    for spec in (small, large):
        rows = {r.method: r for r in results if r.corpus == spec.name}
        plain = rows.get("pydicom read+write loop (1 process)")
        pool = rows.get(f"pydicom read+write pool ({cores} processes)")
        engine = rows.get("radguard Engine loop (1 process)")
        api1 = rows.get("radguard run_deid (1 worker(s))")
        apin = rows.get(f"radguard run_deid ({cores} worker(s))")
        tools = [r for r in rows.values() if r.method.split(" ")[0] in TOOLS and r.ok]
        fastest = max(tools, key=lambda r: r.files_per_s) if tools else None
        cli1 = rows.get("radguard deid (CLI, 1 worker(s))")
        clin = rows.get(f"radguard deid (CLI, {cores} worker(s))")
        lines.append(f"[{spec.name}]")
        for label, mine, ref, target in (
            ("per core: Engine loop / pydicom loop", engine, plain, 0.8),
            ("per core: run_deid(1 worker) / pydicom loop", api1, plain, 0.8),
            (f"all cores: run_deid({cores}) / pydicom pool({cores})", apin, pool, 0.8),
        ):
            value = _ratio_text(ratio(mine, ref), target, ratio(mine, ref, cpu=True))
            lines.append(f"  {label:<48} {value}")
        if fastest is not None:
            tool = fastest.method.split(" ")[0]
            for label, mine in (
                (f"CLI: radguard 1 worker / fastest tool ({tool})", cli1),
                (f"CLI: radguard {cores} workers / fastest tool ({tool})", clin),
            ):
                value = _ratio_text(ratio(mine, fastest), 2.5, ratio(mine, fastest, cpu=True))
                lines.append(f"  {label:<48} {value}")
    return lines


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    sys.exit(main())
