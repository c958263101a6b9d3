"""Generalizations that lower re-identification risk, and the risk after each.

Every quasi-identifier has a hierarchy of ever coarser levels (ARX's generalization
hierarchies), chosen by its kind:

- ages (VR AS): 5-, 10-, 20-year bands with 90 and over aggregated, then dropped;
- dates (DA, DT): month, year, then dropped;
- Patient's Weight and Size: 5/10/20 kg and 0.05/0.1/0.2 m bands, then dropped;
- anything else: rare values top-coded (values held by fewer than ``k`` records become
  ``(other)``, ``k`` the class size the target risk needs), then dropped.

Each level is a coarsening of the one below it, so moving up never raises any risk.
:func:`suggest` tries every level of every quasi-identifier on its own; :func:`plan` combines
levels greedily until the highest prosecutor risk reaches a target.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR

from radguard.risk.measures import Figures, RiskReport, figures
from radguard.risk.records import MISSING, MULTI_SEP, Record, RiskInputError
from radguard.risk.table import Codes, Column, Table, classes

OTHER = "(other)"
"""The value rare values are top-coded to."""

DROPPED = "*"
"""The value of a dropped quasi-identifier (ARX's suppression symbol)."""

DEFAULT_TARGET = 0.2
"""Highest prosecutor risk :func:`plan` aims for (every class at least 5 records)."""

_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
_AGE_TOP = 90  # HIPAA Safe Harbor and radguard's policies: 90 and over is one value
_BANDS: dict[str, tuple[tuple[float, ...], str]] = {
    "PatientWeight": ((5.0, 10.0, 20.0), "kg"),
    "PatientSize": ((0.05, 0.1, 0.2), "m"),
}


class Method(enum.Enum):
    """How a generalization coarsens one quasi-identifier."""

    AGE_BANDS = "age-bands"
    MONTH = "month"
    YEAR = "year"
    BANDS = "bands"
    TOP_CODE = "top-code"
    DROP = "drop"


@dataclass(frozen=True)
class Generalization:
    """One coarsening of one quasi-identifier.

    ``width`` is the band width (years for ages, the unit of :data:`_BANDS` for numbers) or,
    for :attr:`Method.TOP_CODE`, the fewest records a value must have to stay.
    """

    keyword: str
    method: Method
    width: float | None = None

    def __post_init__(self) -> None:
        needs_width = self.method in (Method.AGE_BANDS, Method.BANDS, Method.TOP_CODE)
        if needs_width and not (self.width and self.width > 0):
            raise RiskInputError(f"{self.method.value} of {self.keyword} needs a width above 0")

    def describe(self) -> str:
        """What the generalization does, in words."""
        w = f"{self.width:g}" if self.width is not None else ""
        match self.method:
            case Method.AGE_BANDS:
                return f"{self.keyword} in {w}-year bands (90 and over as one)"
            case Method.MONTH:
                return f"{self.keyword} coarsened to month (YYYYMM)"
            case Method.YEAR:
                return f"{self.keyword} coarsened to year (YYYY)"
            case Method.BANDS:
                unit = _BANDS[self.keyword][1] if self.keyword in _BANDS else "unit"
                return f"{self.keyword} in {w} {unit} bands"
            case Method.TOP_CODE:
                return f"{self.keyword}: values on fewer than {w} records become {OTHER}"
            case Method.DROP:
                return f"drop {self.keyword}"
        raise AssertionError(self.method)  # pragma: no cover

    def to_json(self) -> dict[str, Any]:
        return {"keyword": self.keyword, "method": self.method.value, "width": self.width}

    def apply(self, value: str) -> str:
        """The generalized form of one released value (not for top-coding, which counts)."""
        if self.method is Method.DROP:
            return DROPPED
        if value == MISSING:
            return MISSING
        parts = {self._one(part) for part in value.split(MULTI_SEP)}
        return MULTI_SEP.join(sorted(parts))

    def _one(self, value: str) -> str:
        width = self.width or 1.0
        if self.method is Method.AGE_BANDS:
            return _age_band(value, int(width))
        if self.method is Method.MONTH:
            return value[:6] if value[:6].isdigit() else value
        if self.method is Method.YEAR:
            return value[:4] if value[:4].isdigit() else value
        if self.method is Method.BANDS:
            return _number_band(value, width)
        return value


@dataclass(frozen=True)
class Suggestion:
    """Generalizations to apply, and the risk of the release after them.

    ``after.prosecutor.records_at_risk`` is the share of records still above the target: those
    that would have to be withheld for the rest to meet it. ``withheld`` is the number of
    records a :func:`plan` withholds (within its ``max_withheld``); ``after`` then describes
    the records that remain.
    """

    description: str
    generalizations: tuple[Generalization, ...]
    after: Figures
    meets_target: bool
    withheld: int = 0

    @property
    def prosecutor_risk(self) -> float:
        """Highest prosecutor risk after the generalizations."""
        return self.after.prosecutor.highest

    @property
    def unique_fraction(self) -> float:
        return self.after.unique_fraction

    def to_json(self) -> dict[str, Any]:
        a = self.after
        return {
            "description": self.description,
            "generalizations": [g.to_json() for g in self.generalizations],
            "k_anonymity": a.k_anonymity,
            "prosecutor_risk": a.prosecutor.highest,
            "average_prosecutor_risk": a.prosecutor.average,
            "unique_fraction": a.unique_fraction,
            "records_at_risk": a.prosecutor.records_at_risk,
            "journalist_risk": a.journalist.highest if a.journalist else None,
            "marketer_risk": a.marketer,
            "withheld": self.withheld,
            "meets_target": self.meets_target,
        }


def hierarchy(keyword: str, min_count: int) -> tuple[Generalization, ...]:
    """The levels above the released value of ``keyword``, finest first."""
    vr = dictionary_VR(keyword)
    if vr == "AS":
        levels = [Generalization(keyword, Method.AGE_BANDS, w) for w in (5, 10, 20)]
    elif vr in ("DA", "DT"):
        levels = [Generalization(keyword, Method.MONTH), Generalization(keyword, Method.YEAR)]
    elif keyword in _BANDS:
        levels = [Generalization(keyword, Method.BANDS, w) for w in _BANDS[keyword][0]]
    else:
        levels = [Generalization(keyword, Method.TOP_CODE, min_count)]
    return (*levels, Generalization(keyword, Method.DROP))


def suggest(
    records: Sequence[Record],
    qis: Sequence[str],
    report: RiskReport | None = None,
    *,
    target: float = DEFAULT_TARGET,
) -> list[Suggestion]:
    """Every single generalization that changes the release, with the risk after it.

    Sorted by highest prosecutor risk after, then unique share, then average risk. Journalist
    and marketer risks after are computed when ``report`` was assessed with a population.
    """
    search = _Search(records, qis, report, target)
    found = []
    for keyword in search.qis:
        for generalization in hierarchy(keyword, search.min_count):
            column = search.column(generalization)
            if len(column.vocabulary) == len(search.table.columns[keyword].vocabulary):
                continue  # merges no values: the release is unchanged
            after = search.figures({keyword: generalization})
            found.append(
                Suggestion(
                    generalization.describe(),
                    (generalization,),
                    after,
                    search.meets(after),
                )
            )
    found.sort(key=lambda s: (*_risk_key(s.after), s.description))
    return found


def plan(
    records: Sequence[Record],
    qis: Sequence[str],
    report: RiskReport | None = None,
    *,
    target: float = DEFAULT_TARGET,
    max_withheld: float = 0.0,
) -> Suggestion:
    """A combination of generalizations that brings the highest prosecutor risk to ``target``.

    With ``max_withheld`` (a share of records, 0 by default) the plan may instead leave up to
    that share of records in classes smaller than ``1/target``, to be withheld from the
    release (ARX's record suppression); the figures after are those of the records kept.

    Greedy and loss-aware: each step raises one quasi-identifier to a higher level of its
    :func:`hierarchy`, choosing the step that removes the most risk (share of records above
    the target plus average risk) per unit of information lost (the drop in the logarithm of
    the number of distinct values, 1 for dropping the field). Once the target is met, each
    generalization is lowered again as far as the target still holds. A heuristic, not ARX's
    optimal search; ``meets_target`` is False when even dropping every quasi-identifier
    leaves fewer than ``1/target`` records.
    """
    if not 0 <= max_withheld < 1:
        raise RiskInputError(f"max_withheld must be in [0, 1), got {max_withheld}")
    search = _Search(records, qis, report, target, max_withheld)
    levels = {q: hierarchy(q, search.min_count) for q in search.qis if search.varies(q)}
    chosen: dict[str, int] = {}  # keyword -> index into its levels

    def state(choice: Mapping[str, int]) -> dict[str, Generalization]:
        return {q: levels[q][i] for q, i in choice.items()}

    def loss(keyword: str, level: int | None) -> float:
        return 0.0 if level is None else search.loss(levels[keyword][level])

    after = search.figures({})
    while not search.meets(after):
        best: tuple[tuple[float, float, str], dict[str, int], Figures] | None = None
        for keyword, hierarchy_levels in levels.items():
            current = chosen.get(keyword)
            for level in range((-1 if current is None else current) + 1, len(hierarchy_levels)):
                cost = loss(keyword, level) - loss(keyword, current)
                if cost <= 0:
                    continue  # merges nothing more than the current level
                trial = {**chosen, keyword: level}
                trial_after = search.figures(state(trial))
                gain = _progress(after) - _progress(trial_after)
                key = (-gain / cost, cost, keyword)
                if best is None or key < best[0]:
                    best = (key, trial, trial_after)
        if best is None:
            break
        _, chosen, after = best
    if search.meets(after):  # give back what the target does not need, costliest first
        for keyword in sorted(chosen, key=lambda q: -loss(q, chosen[q])):
            for lower in [None, *range(chosen[keyword])]:
                trial = {q: i for q, i in chosen.items() if q != keyword}
                if lower is not None:
                    trial[keyword] = lower
                trial_after = search.figures(state(trial))
                if search.meets(trial_after):
                    chosen, after = trial, trial_after
                    break
    applied = tuple(levels[q][chosen[q]] for q in search.qis if q in chosen)
    words = [g.describe() for g in applied]
    met, withheld = search.meets(after), 0
    if met and after.prosecutor.records_at_risk > 0:
        after, withheld = search.withholding(state(chosen))
        noun = "record" if withheld == 1 else "records"
        words.append(f"withhold {withheld} {noun} in classes smaller than {search.min_count}")
    return Suggestion("; ".join(words) or "no generalization needed", applied, after, met, withheld)


class _Search:
    """The records coded once, generalized columns cached, figures for any combination."""

    def __init__(
        self,
        records: Sequence[Record],
        qis: Sequence[str],
        report: RiskReport | None,
        target: float,
        max_withheld: float = 0.0,
    ) -> None:
        if not records:
            raise RiskInputError("no records to generalize")
        if not 0 < target <= 1:
            raise RiskInputError(f"target risk must be in (0, 1], got {target}")
        self.table = Table(records, qis)
        self.qis = self.table.qis
        self.target = target
        self.min_count = math.ceil(1 / target - 1e-9)
        self.max_withheld = max_withheld
        self.pi = report.sampling_fraction if report else None
        self._columns: dict[Generalization, Column] = {}

    def column(self, generalization: Generalization) -> Column:
        cached = self._columns.get(generalization)
        if cached is None:
            base = self.table.columns[generalization.keyword]
            if generalization.method is Method.TOP_CODE:
                counts = base.counts()
                rare = {
                    v for v, c in zip(base.vocabulary, counts, strict=True) if c < self.min_count
                }
                cached = base.mapped(lambda v: OTHER if v in rare else v)
            else:
                cached = base.mapped(generalization.apply)
            self._columns[generalization] = cached
        return cached

    def sizes(self, applied: Mapping[str, Generalization]) -> Codes:
        """Class sizes after the generalizations ``applied`` (keyword -> generalization)."""
        columns = [
            self.column(applied[q]) if q in applied else self.table.columns[q]
            for q in self.qis
            if q not in applied or applied[q].method is not Method.DROP
        ]
        return classes(columns, len(self.table))[1]

    def figures(self, applied: Mapping[str, Generalization]) -> Figures:
        return figures(self.sizes(applied), self.pi, self.target)

    def withholding(self, applied: Mapping[str, Generalization]) -> tuple[Figures, int]:
        """Figures of the records kept when classes below the target are withheld."""
        sizes = self.sizes(applied)
        kept = sizes[sizes >= self.min_count]
        withheld = int(sizes.sum() - kept.sum())
        pi = None if self.pi is None else self.pi * float(kept.sum()) / float(sizes.sum())
        return figures(kept, pi, self.target), withheld

    def varies(self, keyword: str) -> bool:
        """True when the records hold more than one value of ``keyword``."""
        return len(self.table.columns[keyword].vocabulary) > 1

    def loss(self, generalization: Generalization) -> float:
        """Information lost: 1 - log(distinct values after) / log(distinct values released)."""
        before = len(self.table.columns[generalization.keyword].vocabulary)
        if generalization.method is Method.DROP or before < 2:
            return 1.0 if before > 1 else 0.0
        return 1.0 - math.log(len(self.column(generalization).vocabulary)) / math.log(before)

    def meets(self, after: Figures) -> bool:
        """Whether no more than the allowed share of records is above the target."""
        return after.prosecutor.records_at_risk <= self.max_withheld + 1e-12


def _risk_key(after: Figures) -> tuple[float, float, float, float]:
    p = after.prosecutor
    return (p.highest, after.unique_fraction, p.records_at_risk, p.average)


def _progress(after: Figures) -> float:
    """What the greedy plan drives down: records above the target plus average risk."""
    return after.prosecutor.records_at_risk + after.prosecutor.average


def _age_band(value: str, width: int) -> str:
    match = _AGE.match(value.strip())
    if not match:
        return value
    years = int(match[1]) * _DAYS_PER_UNIT[match[2]] / _DAYS_PER_UNIT["Y"]
    if years >= _AGE_TOP:
        return f"{_AGE_TOP}+"
    low = int(years // width) * width
    return f"{low}-{min(low + width, _AGE_TOP) - 1}"


def _number_band(value: str, width: float) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    if not math.isfinite(number):
        return value
    steps = math.floor(number / width + 1e-9)
    low, high = round(steps * width, 6), round((steps + 1) * width, 6)
    return f"[{low:g}, {high:g})"
