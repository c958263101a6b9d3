"""The series-level pre-pass of ``radguard deid`` for Clean Recognizable Visual Features.

Defacing needs the whole volume while the pipeline's stages see one file at a time, so before
the per-file run every CT, MR and PET series among the inputs is grouped (whatever its Body
Part Examined says: the image decides), defaced one volume per task (local processes or the
Dask cluster) into the run folder (0700, it holds PHI), and the outcome of each input file is
written to a plan the face stage reads: ``defaced`` (the run processes the defaced file in
its place), ``no-face`` (released as it is, the finding recorded) or ``refused`` (quarantined
with the reason).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard.deface.engine import DefaceSettings, Status
from radguard.deface.series import SeriesResult, deface_series, group_series

PLAN_NAME = "plan.json"


@dataclass
class FacePlan:
    """Per input digest: the file to process instead (defaced) and the outcome."""

    path: Path
    substitutes: dict[str, str] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    results: list[SeriesResult] = field(default_factory=list)


def plan_faces(
    inputs: Sequence[tuple[str, str]],
    work_dir: Path,
    settings: DefaceSettings | None = None,
    workers: int = 1,
    scheduler: str = "",
) -> FacePlan:
    """Deface every CT/MR/PET series among ``inputs`` ((path, digest) pairs) into
    ``work_dir`` and write the plan the face stage reads."""
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(work_dir, 0o700)
    digests = {str(Path(p)): d for p, d in inputs}
    groups = list(group_series(Path(p) for p, _ in inputs))
    args = [
        (key, [str(p) for p in files], str(work_dir / f"series-{key}"), settings, hint)
        for key, files, hint in groups
    ]
    results = _run(args, workers, scheduler)
    plan = FacePlan(work_dir / PLAN_NAME, results=results)
    for result in results:
        outputs = dict(zip(result.inputs, result.outputs, strict=False))
        for source in result.inputs:
            digest = digests.get(str(Path(source)))
            if digest is None:
                continue
            plan.outcomes[digest] = (result.status.value, result.reason)
            if result.status is Status.DEFACED:
                if source in outputs:
                    plan.substitutes[digest] = outputs[source]
                    plan.originals[digest] = source
                else:  # fail closed: a defaced series must replace every one of its files
                    plan.outcomes[digest] = (Status.REFUSED.value, "defaced file missing")
    text = json.dumps({d: list(o) for d, o in plan.outcomes.items()})
    tmp = plan.path.with_name(f".{PLAN_NAME}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, plan.path)
    _write_records(results, work_dir)
    return plan


def _run(args: list[tuple[Any, ...]], workers: int, scheduler: str) -> list[SeriesResult]:
    """One volume per task: in this process, a local pool, or on the Dask cluster."""
    if not args:
        return []
    if scheduler:
        from dask.distributed import Client

        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            futures = [client.submit(deface_series, *a, pure=False) for a in args]
            return list(client.gather(futures))
    if workers <= 1 or len(args) == 1:
        return [deface_series(*a) for a in args]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(workers, len(args))) as pool:
        return list(pool.map(deface_series, *zip(*args, strict=True)))


def _write_records(results: list[SeriesResult], work_dir: Path) -> None:
    """Proof per series (JSON) and the renders (HTML) beside the defaced files."""
    from radguard.deface.report import write_report

    records = [r.to_json() for r in results]
    (work_dir / "proof.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    write_report(results, work_dir / "report.html")


def load_plan(path: str) -> dict[str, tuple[str, str]]:
    """The plan written by :func:`plan_faces` (digest -> (status, reason))."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return {d: (str(o[0]), str(o[1])) for d, o in data.items()}
