"""The Retain Safe Private Option's dictionary (PS3.15 Table E.3.10-1), extensible by policy.

A private attribute is identified by its private creator, its group and its element offset
within the creator's block (the low byte of the element number), never by the block number
the file happened to reserve.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

PrivateKey = tuple[str, int, int]  # (creator, group, element offset)


def normalize_creator(creator: str) -> str:
    return creator.strip().upper()


@dataclass(frozen=True)
class SafePrivate:
    """Set of private attributes considered safe to keep."""

    entries: frozenset[PrivateKey]
    edition: str = ""
    conditional: frozenset[PrivateKey] = field(default_factory=frozenset)

    def is_safe(self, creator: str, group: int, offset: int) -> bool:
        return (normalize_creator(creator), group, offset) in self.entries

    def extended(self, extra: Iterable[PrivateKey]) -> SafePrivate:
        keys = {(normalize_creator(c), g, e) for c, g, e in extra}
        return SafePrivate(self.entries | keys, self.edition, self.conditional)

    def __len__(self) -> int:
        return len(self.entries)


@lru_cache(maxsize=1)
def load_safe_private() -> SafePrivate:
    """The standard's exemplary safe private attributes, as shipped with radguard.

    Rows the standard marks safe only under a condition are kept out of the default set
    (fail closed); a policy can add them explicitly.
    """
    path = resources.files("radguard.profile").joinpath("safe_private.json")
    data = json.loads(path.read_text())
    safe: set[PrivateKey] = set()
    conditional: set[PrivateKey] = set()
    for entry in data["entries"]:
        key = (
            normalize_creator(entry["creator"]),
            int(entry["group"], 16),
            int(entry["element"], 16),
        )
        (conditional if entry.get("safe_if") else safe).add(key)
    return SafePrivate(frozenset(safe), data.get("edition", ""), frozenset(conditional))
