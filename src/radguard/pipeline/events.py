"""Notification-style events: many subscribers, and a failing subscriber never stops a run.

Events: ``file_released``, ``file_rejected`` (excluded, quarantined or failed) and
``release_completed``. The manifest writer, the progress display and the vault subscribe; the
stages do not know them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from radguard.errors import log_failure

FILE_RELEASED = "file_released"
FILE_REJECTED = "file_rejected"
RELEASE_COMPLETED = "release_completed"
EVENTS = (FILE_RELEASED, FILE_REJECTED, RELEASE_COMPLETED)

_log = logging.getLogger("radguard.events")
Handler = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)

    def subscribe(self, event: str, handler: Handler) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        self._handlers[event].append(handler)

    def emit(self, event: str, payload: Any) -> None:
        for handler in self._handlers.get(event, []):
            try:
                handler(payload)
            except Exception as error:  # noqa: BLE001 - subscribers must not break the pipeline
                log_failure(_log, f"event handler for {event} failed", error)
