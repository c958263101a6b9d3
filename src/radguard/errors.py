"""One exception root for radguard, with the few subclasses callers act on."""

from __future__ import annotations

import logging
import traceback


class RadguardError(Exception):
    """Base of every error radguard raises on purpose."""


class PolicyError(RadguardError):
    """A policy file or option set is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid policy {source}:\n{listing}")


class KeyFileError(RadguardError):
    """A key file is missing, unreadable, malformed or too widely readable."""


class UnreadableInput(RadguardError):
    """An input file cannot be parsed as DICOM."""


class Rejected(RadguardError):
    """A stage refused a file: it goes to quarantine (or excluded) with ``reason``."""

    def __init__(self, reason: str, *, excluded: bool = False) -> None:
        self.reason = reason
        self.excluded = excluded
        super().__init__(reason)


class VaultError(RadguardError):
    """The mapping vault cannot be opened or read with the given key."""


# What pydicom raises on a corrupt, truncated or non-DICOM file (read errors, not bugs).
DICOM_READ_ERRORS: tuple[type[Exception], ...] = (
    EOFError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    NotImplementedError,
    AttributeError,
    OverflowError,
)


def log_failure(logger: logging.Logger, message: str, error: BaseException) -> None:
    """Log where an unexpected error happened without its message: exception messages from
    DICOM parsing and network libraries can quote attribute values (PHI)."""
    stack = "".join(traceback.format_tb(error.__traceback__))
    logger.error("%s: %s (message withheld)\n%s", message, type(error).__name__, stack.rstrip())
