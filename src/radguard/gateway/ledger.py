"""The bridge to the disclosure ledger (``[ledger]`` in the gateway configuration).

Each forwarded study becomes one :class:`~radguard.gateway.events.StudyForwarded`; this module
turns it into a ledger append. With ``[ledger] enabled = true`` and no ledger available the
gateway refuses to start (fail closed: it was asked to record every disclosure).
"""

from __future__ import annotations

from typing import Any

from radguard.errors import RadguardError
from radguard.gateway.config import GatewayConfig
from radguard.gateway.events import Hook, StudyForwarded


def ledger_hook(config: GatewayConfig) -> Hook | None:
    """The recording hook for ``config.ledger``, or None when the ledger is not configured."""
    settings = config.ledger
    if not settings.enabled:
        return None
    try:
        import radguard.govern as govern
    except ImportError as error:
        raise RadguardError(
            "[ledger] is enabled but this radguard has no disclosure ledger (radguard.govern); "
            "remove the [ledger] section or install a radguard that includes it"
        ) from error
    append = getattr(govern, "record_disclosure", None)
    if append is None:
        raise RadguardError("radguard.govern does not expose record_disclosure()")

    def record(event: StudyForwarded) -> None:
        append(settings.path, **disclosure_fields(event))

    return record


def disclosure_fields(event: StudyForwarded) -> dict[str, Any]:
    """The ledger entry for one forwarded study (what, to whom, why, which files)."""
    return {
        "recipient": event.recipient,
        "destination": event.destination,
        "purpose": event.purpose,
        "study": event.study,
        "files": [f.__dict__ for f in event.files],
        "summary": event.summary,
    }
