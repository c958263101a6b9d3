"""The gateway: a DICOM node between the hospital PACS and the research archive.

``radguard serve`` receives (C-ECHO, C-STORE from allowed AE titles), spools durably, groups
studies by a quiet period, runs the ``radguard deid`` pipeline and the verifier per release
batch (risk limit per batch), and forwards by C-STORE, STOW-RS or into a folder, with retries,
backoff and a dead-letter folder. ``radguard pull`` fetches studies from a PACS into the same
pipeline. See docs/gateway.md.
"""

from radguard.gateway.config import (
    AuthKind,
    Destination,
    DestinationKind,
    GatewayConfig,
    GatewayConfigError,
    check_config,
    load_config,
)
from radguard.gateway.events import Hooks, ReleasedFile, StudyForwarded
from radguard.gateway.forward import ForwardError
from radguard.gateway.process import BatchOutcome, PipelineSettings, process_batch
from radguard.gateway.pull import PullResult, PullSource, Retrieve, SourceKind, pull
from radguard.gateway.server import Gateway
from radguard.gateway.spool import Spool
from radguard.gateway.status import gateway_status, requeue

__all__ = [
    "AuthKind",
    "BatchOutcome",
    "Destination",
    "DestinationKind",
    "ForwardError",
    "Gateway",
    "GatewayConfig",
    "GatewayConfigError",
    "Hooks",
    "PipelineSettings",
    "PullResult",
    "PullSource",
    "ReleasedFile",
    "Retrieve",
    "SourceKind",
    "Spool",
    "StudyForwarded",
    "check_config",
    "gateway_status",
    "load_config",
    "process_batch",
    "pull",
    "requeue",
]
