"""Train models with the user's recipe in separate processes and score every record.

Each job builds a model with ``model_factory``, trains it with ``train_fn`` on a subset of
the records and returns phi = logit Pr(y | x) for all records (and a test AUC when test records are
given), so no model crosses a process boundary. Jobs run in a spawn pool; callables that
cannot be pickled (lambdas, closures) run in this process instead, and the report says so.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.vet.data import Records, VetError, require_torch

ModelFactory = Callable[[], Any]
TrainFn = Callable[[Any, Records, int], Any]


@dataclass(frozen=True)
class Job:
    """Train on ``records[train]`` with ``seed``; score ``records`` (and ``test``)."""

    name: str
    model_factory: ModelFactory
    train_fn: TrainFn
    records: Records
    train: NDArray[np.bool_]
    seed: int
    test: Records | None = None
    threads: int = 1


@dataclass(frozen=True)
class JobResult:
    name: str
    phi: NDArray[np.float64]
    test_auc: float | None
    seconds: float
    cpu_seconds: float = 0.0


def run_job(job: Job) -> JobResult:
    """Train one model and score every record (runs in a worker process)."""
    from radguard.vet.models import confidence_logit, utility_auc

    torch = require_torch()
    torch.set_num_threads(max(1, job.threads))
    start, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(job.seed)
    model = job.model_factory()
    model = job.train_fn(model, job.records.subset(job.train), job.seed)
    phi = confidence_logit(model, job.records)
    test = None
    if job.test is not None and not job.test.is_segmentation:
        test = utility_auc(model, job.test)
    return JobResult(job.name, phi, test, time.perf_counter() - start, time.process_time() - cpu)


def picklable(*objects: Any) -> bool:
    """Whether the callables can be sent to a spawned process."""
    try:
        pickle.dumps(objects)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def run_jobs(jobs: Sequence[Job], workers: int) -> tuple[list[JobResult], str]:
    """Run ``jobs`` on ``workers`` spawned processes (0: all cores); returns results in job
    order and how they ran."""
    if not jobs:
        return [], "no jobs"
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(jobs) == 1:
        return [run_job(job) for job in jobs], "sequential, in process"
    if not picklable(jobs[0].model_factory, jobs[0].train_fn):
        return (
            [run_job(job) for job in jobs],
            "sequential, in process (model_factory or train_fn cannot be pickled)",
        )
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        results = list(pool.map(run_job, jobs))
    return results, f"{min(workers, len(jobs))} spawned processes"


_SPECS: dict[str, ModuleType] = {}


def load_spec(path: Path | str) -> ModuleType:
    """Import a spec file (a Python module naming callables and data) once per process."""
    resolved = str(Path(path).resolve())
    if resolved in _SPECS:
        return _SPECS[resolved]
    if not Path(resolved).is_file():
        raise VetError(f"spec file {path} not found")
    name = f"_radguard_spec_{abs(hash(resolved))}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise VetError(f"spec file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _SPECS[resolved] = module
    return module


@dataclass(frozen=True)
class SpecCallable:
    """A callable named in a spec file, picklable by (path, name): a spawned worker
    re-imports the spec instead of receiving the function itself."""

    path: str
    name: str

    def resolve(self) -> Callable[..., Any]:
        target = getattr(load_spec(self.path), self.name, None)
        if not callable(target):
            raise VetError(f"spec {self.path} has no callable {self.name!r}")
        return target  # type: ignore[no-any-return]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = getattr(load_spec(self.path), self.name)
        # A spec may hold a ready picklable object (e.g. a Recipe): call it directly.
        return target(*args, **kwargs)
