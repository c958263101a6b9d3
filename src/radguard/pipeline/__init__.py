"""The pipeline: stages, executors (local processes, Dask), events and run records."""

from radguard.pipeline.events import (
    FILE_REJECTED,
    FILE_RELEASED,
    RELEASE_COMPLETED,
    EventBus,
)
from radguard.pipeline.run import RunOptions, RunSummary, discover, run_deid, run_dir_for
from radguard.pipeline.stages import FileResult, Job, process_file

__all__ = [
    "FILE_REJECTED",
    "FILE_RELEASED",
    "RELEASE_COMPLETED",
    "EventBus",
    "FileResult",
    "Job",
    "RunOptions",
    "RunSummary",
    "discover",
    "process_file",
    "run_deid",
    "run_dir_for",
]
