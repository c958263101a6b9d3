"""Keyed, deterministic replacements: UIDs, patient pseudonyms, date offsets, hashes.

Every value is an HMAC-SHA256 of the original under a sub-key of the pseudonym key, so the same
input and key give the same output on any machine and in any order, with no shared state.
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass, field

from radguard.deid.keys import Keyring

_HASH_FIELD = re.compile(r"\{hash:(\d+)\}")
_B32 = str.maketrans("", "", "=")


@dataclass(frozen=True)
class Pseudonymizer:
    """All keyed replacement functions for one key."""

    keyring: Keyring = field(repr=False)
    _uid_key: bytes = field(init=False, repr=False)
    _patient_key: bytes = field(init=False, repr=False)
    _date_key: bytes = field(init=False, repr=False)
    _hash_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_uid_key", self.keyring.derive("uid"))
        object.__setattr__(self, "_patient_key", self.keyring.derive("patient"))
        object.__setattr__(self, "_date_key", self.keyring.derive("date-shift"))
        object.__setattr__(self, "_hash_key", self.keyring.derive("value-hash"))

    def uid(self, original: str) -> str:
        """A 2.25 UID (PS3.5 B.2) derived from ``original``: at most 44 characters."""
        digest = hmac.digest(self._uid_key, original.strip().encode(), "sha256")
        return "2.25." + str(int.from_bytes(digest[:16], "big") or 1)

    def patient(self, original_id: str, fmt: str) -> str:
        """A patient pseudonym in ``fmt`` (``{hash:N}``: N base-32 characters of the digest)."""
        digest = hmac.digest(self._patient_key, original_id.encode(), "sha256")
        text = base64.b32encode(digest).decode().translate(_B32)
        return _HASH_FIELD.sub(lambda m: text[: int(m.group(1))], fmt)

    def date_offset_days(self, patient_key: str, low: int, high: int) -> int:
        """Per-patient shift in days, in [-high, -low] (dates move into the past)."""
        if high <= 0:
            return 0
        digest = hmac.digest(self._date_key, patient_key.encode(), "sha256")
        span = high - low + 1
        return -(low + int.from_bytes(digest[:8], "big") % span)

    def hash_text(self, value: str, length: int = 16) -> str:
        """A keyed hash of a value (policy action ``hash``), in upper-case base 32."""
        digest = hmac.digest(self._hash_key, value.encode(), "sha256")
        return base64.b32encode(digest).decode().translate(_B32)[:length]

    def digest(self, purpose: str, value: str) -> str:
        """A keyed hex digest for record keeping (e.g. input path digests in the manifest)."""
        key = self.keyring.derive(purpose)
        return hmac.digest(key, value.encode(), "sha256").hex()[:32]
