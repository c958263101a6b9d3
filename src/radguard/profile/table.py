"""Load the generated Table E.1-1 and resolve each attribute's effective action.

The table is package data (``table_e11.json``, made by ``scripts/gen_profile_table.py``).
``ProfileTable.effective`` applies the selected options on top of the basic profile, with the
precedence of :data:`radguard.profile.options.PRECEDENCE`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from radguard.profile.options import PRECEDENCE, Action, Option

PRIVATE_ROW = "ggggeeee-where-gggg-is-odd"
CURVE_ROW = "50xxxxxx"
OVERLAY_DATA_ROW = "60xx3000"
OVERLAY_COMMENTS_ROW = "60xx4000"


@dataclass(frozen=True, slots=True)
class Row:
    """One row of Table E.1-1."""

    id: str
    tag: str
    name: str
    keyword: str
    vr: str
    basic: Action
    options: dict[Option, Action]
    edition: str
    origin: str

    def action(self, options: frozenset[Option]) -> tuple[Action, Option | None]:
        """The action in force under ``options`` and the option that set it (None: basic)."""
        for option in PRECEDENCE:
            if option in options and option in self.options:
                return self.options[option], option
        return self.basic, None


@dataclass(frozen=True)
class ProfileTable:
    """Table E.1-1 as loaded from the package, with its provenance."""

    edition: str
    sources: tuple[dict[str, str], ...]
    rows: tuple[Row, ...]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def by_id(self) -> dict[str, Row]:
        return {row.id: row for row in self.rows}

    def effective(self, options: Iterable[Option]) -> dict[str, tuple[Action, Option | None]]:
        """Row id -> (action, option responsible) for the given option set."""
        chosen = frozenset(options)
        return {row.id: row.action(chosen) for row in self.rows}


@lru_cache(maxsize=1)
def load_table() -> ProfileTable:
    """Load the packaged table (cached: it is immutable)."""
    data = json.loads(resources.files("radguard.profile").joinpath("table_e11.json").read_text())
    by_column = {o.column: o for o in Option if o.column}
    rows = tuple(
        Row(
            id=raw["id"],
            tag=raw["tag"],
            name=raw["name"],
            keyword=raw["keyword"],
            vr=raw["vr"],
            basic=Action(raw["basic"]),
            options={by_column[c]: Action(a) for c, a in raw["options"].items()},
            edition=raw["edition"],
            origin=raw["origin"],
        )
        for raw in data["rows"]
    )
    return ProfileTable(edition=data["edition"], sources=tuple(data["sources"]), rows=rows)
