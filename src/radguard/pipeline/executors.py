"""Executors: run ``process_file`` over a stream of inputs, in order of completion.

All executors keep a bounded number of files in flight, so memory stays flat whatever the size
of the corpus. ``local`` uses a process pool on this machine (``workers=1`` runs in-process);
``dask`` runs the same function on a Dask distributed cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from radguard.errors import RadguardError
from radguard.pipeline.stages import FileResult, Job, process_file

Task = tuple[str, str]  # (path, digest)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def run_local(tasks: Iterable[Task], job: Job, workers: int) -> Iterator[FileResult]:
    if workers <= 1:
        for path, digest in tasks:
            yield process_file(path, digest, job)
        return
    window = workers * 8
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[FileResult]] = set()
        for path, digest in tasks:
            pending.add(pool.submit(process_file, path, digest, job))
            if len(pending) >= window:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        for future in _drain(pending):
            yield future.result()


def _drain(pending: set[Future[FileResult]]) -> Iterator[Future[FileResult]]:
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from done


def _process_batch(batch: list[Task], job: Job) -> list[FileResult]:
    return [process_file(path, digest, job) for path, digest in batch]


def run_dask(
    tasks: Iterable[Task], job: Job, scheduler: str, batch_size: int = 32
) -> Iterator[FileResult]:
    """Run on a Dask cluster; the job (with the key) is scattered to the workers once."""
    try:
        from distributed import Client, as_completed
    except ImportError as error:
        raise RadguardError(
            "the Dask executor needs the 'dask' extra: pip install 'radguard[dask]'"
        ) from error
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as error:
        raise RadguardError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from error
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        [job_future] = client.scatter([job], broadcast=True)
        window = workers * 4
        batches = _batches(tasks, batch_size)
        futures: Any = as_completed()
        in_flight = 0
        for batch in batches:
            futures.add(client.submit(_process_batch, batch, job_future, pure=False))
            in_flight += 1
            if in_flight >= window:
                future = next(futures)
                in_flight -= 1
                yield from future.result()
        for future in futures:
            yield from future.result()
    finally:
        client.close()


def _batches(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    batch: list[Task] = []
    for task in tasks:
        batch.append(task)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
