"""What the gateway tells others: a study was forwarded (the disclosure ledger subscribes).

A hook is any callable taking a :class:`StudyForwarded`. Hooks registered as *recording* (the
ledger) must succeed: when one raises, the delivery stays in the outbox marked as sent and the
hook is retried with backoff, without sending the study again. Other hooks are notifications:
their failures are logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from radguard.errors import log_failure

_log = logging.getLogger("radguard.gateway")


@dataclass(frozen=True)
class ReleasedFile:
    """One released instance: its path in the study (series/instance) and content digest."""

    path: str
    sop_instance_uid: str
    sha256: str


@dataclass(frozen=True)
class StudyForwarded:
    """One de-identified study delivered to one destination.

    ``study`` is the de-identified Study Instance UID; ``summary`` holds the batch id, the
    policy name and sha256, the key fingerprint, the batch's risk measures and the verifier's
    verdict, the delivery time and the number of attempts. Nothing here identifies a person.
    """

    destination: str
    recipient: str
    purpose: str
    study: str
    files: tuple[ReleasedFile, ...]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Hook = Callable[[StudyForwarded], None]


class Hooks:
    """Recording hooks (must succeed) and notification hooks (failures logged)."""

    def __init__(self) -> None:
        self.recording: list[Hook] = []
        self.notify: list[Hook] = []

    def add(self, hook: Hook, *, recording: bool = False) -> None:
        (self.recording if recording else self.notify).append(hook)

    def record(self, event: StudyForwarded) -> None:
        """Run the recording hooks; the first failure propagates (the caller retries)."""
        for hook in self.recording:
            hook(event)

    def emit(self, event: StudyForwarded) -> None:
        for hook in self.notify:
            try:
                hook(event)
            except Exception as error:  # noqa: BLE001 - notifications never stop delivery
                log_failure(_log, "study_forwarded hook failed", error)
