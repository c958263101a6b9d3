"""Re-identification risk of a released set: k-anonymity, prosecutor, journalist, marketer.

Definitions follow El Emam, *Guide to the De-Identification of Personal Health Information*
(2013), as implemented by ARX (Prasser et al.; ``org.deidentifier.arx.risk.
RiskModelSampleSummary``). With ``f_k`` the size of equivalence class ``k`` in the released
set (``n`` records, ``K`` classes) and ``F_k`` its size in the population:

- prosecutor: record risk ``1/f_k``; highest ``1/min f_k``; average ``K/n``;
- journalist: record risk ``1/F_k``; highest ``1/min F_k``; average
  ``max(K / sum F_k, (1/n) sum f_k/F_k)``;
- marketer: ``(1/n) sum f_k/F_k``, the expected share of records re-identified.

Without a population table, ``F_k`` is estimated from the sampling fraction ``pi = n/N`` as
``F_k = f_k/pi`` (the moment estimator under uniform sampling). The share of the population
unique on the quasi-identifiers is estimated with Zayatz's model (1991), as ARX does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radguard.risk.records import Record, RiskInputError, Unit, check_quasi_identifiers
from radguard.risk.table import Codes, Table, classes

DEFAULT_THRESHOLD = 0.2
"""Record risk above which a record counts as "at risk" (0.2: classes smaller than 5)."""

_EPSILON = 1e-12  # 1/5 compared with 0.2 must not count as "above"


@dataclass(frozen=True)
class RiskSummary:
    """One attacker model's figures (ARX's rB, rC, rA)."""

    highest: float
    """Highest record risk: the probability of re-identifying the most exposed record."""
    average: float
    """Average record risk: the expected share of records re-identified ("success rate")."""
    records_at_risk: float
    """Share of records whose risk is above the threshold."""


@dataclass(frozen=True)
class RecordRisk:
    """A record at high risk: its pseudonymous id, prosecutor risk, class size and values."""

    record_id: str
    risk: float
    class_size: int
    values: dict[str, str]


@dataclass(frozen=True)
class Figures:
    """The class-size figures of one partition of the records (the report without records)."""

    n_records: int
    n_classes: int
    k_anonymity: int
    unique_fraction: float
    prosecutor: RiskSummary
    journalist: RiskSummary | None
    marketer: float | None
    population_unique_fraction: float | None


@dataclass(frozen=True)
class RiskReport:
    """The re-identification risk of a released set; see :func:`assess`."""

    unit: Unit
    quasi_identifiers: tuple[str, ...]
    figures: Figures
    class_sizes: dict[int, int]
    """Histogram: class size -> number of classes of that size."""
    threshold: float
    population: int | None
    sampling_fraction: float | None
    highest_risk: tuple[RecordRisk, ...] = field(default=())

    @property
    def n_records(self) -> int:
        return self.figures.n_records

    @property
    def k_anonymity(self) -> int:
        return self.figures.k_anonymity

    @property
    def unique_fraction(self) -> float:
        return self.figures.unique_fraction

    @property
    def prosecutor(self) -> RiskSummary:
        return self.figures.prosecutor

    @property
    def journalist(self) -> RiskSummary | None:
        return self.figures.journalist

    @property
    def marketer(self) -> float | None:
        return self.figures.marketer

    def exceeds(self, max_risk: float) -> bool:
        """True when the highest prosecutor risk is above ``max_risk`` (the release gate)."""
        return self.figures.prosecutor.highest > max_risk + _EPSILON

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON-ready values; journalist and marketer are None without N."""
        f = self.figures
        journalist = f.journalist
        return {
            "unit": self.unit.value,
            "records": f.n_records,
            "quasi_identifiers": list(self.quasi_identifiers),
            "equivalence_classes": f.n_classes,
            "class_sizes": {str(size): count for size, count in sorted(self.class_sizes.items())},
            "k_anonymity": f.k_anonymity,
            "unique_fraction": f.unique_fraction,
            "threshold": self.threshold,
            "prosecutor_risk": f.prosecutor.highest,
            "average_prosecutor_risk": f.prosecutor.average,
            "records_at_risk": f.prosecutor.records_at_risk,
            "population": self.population,
            "sampling_fraction": self.sampling_fraction,
            "journalist_risk": journalist.highest if journalist else None,
            "average_journalist_risk": journalist.average if journalist else None,
            "journalist_records_at_risk": journalist.records_at_risk if journalist else None,
            "marketer_risk": f.marketer,
            "population_unique_fraction": f.population_unique_fraction,
            "highest_risk": [
                {
                    "id": r.record_id,
                    "risk": r.risk,
                    "class_size": r.class_size,
                    "values": dict(r.values),
                }
                for r in self.highest_risk
            ],
        }


def assess(
    records: Sequence[Record],
    qis: Sequence[str],
    population: int | None = None,
    sampling_fraction: float | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    top: int = 10,
) -> RiskReport:
    """The re-identification risk of ``records`` on the quasi-identifiers ``qis``.

    ``population`` (N, in the records' unit: patients, studies or series) or
    ``sampling_fraction`` (n/N) enables journalist and marketer risk and population uniqueness;
    without either only prosecutor risk is computed. ``threshold`` is the record risk above
    which a record is "at risk"; ``top`` the number of highest-risk records listed.
    """
    keywords = check_quasi_identifiers(qis)
    if not records:
        raise RiskInputError("no records to measure: no DICOM files with a patient/study id")
    units = {r.unit for r in records}
    if len(units) > 1:
        raise RiskInputError(f"records mix units: {sorted(u.value for u in units)}")
    if not 0 < threshold <= 1:
        raise RiskInputError(f"threshold must be in (0, 1], got {threshold}")
    n = len(records)
    pi = sampling_fraction_for(n, population, sampling_fraction)
    table = Table(records, keywords)
    inverse, sizes = classes(list(table.columns.values()), n)
    record_sizes = sizes[inverse]
    order = sorted(range(n), key=lambda i: (int(record_sizes[i]), table.ids[i]))[: max(top, 0)]
    highest = tuple(
        RecordRisk(
            record_id=table.ids[i],
            risk=1.0 / int(record_sizes[i]),
            class_size=int(record_sizes[i]),
            values={q: table.columns[q].value_of(i) for q in keywords},
        )
        for i in order
    )
    return RiskReport(
        unit=records[0].unit,
        quasi_identifiers=keywords,
        figures=figures(sizes, pi, threshold),
        class_sizes=dict(sorted(Counter(int(s) for s in sizes).items())),
        threshold=threshold,
        population=None if pi is None else round(n / pi),
        sampling_fraction=pi,
        highest_risk=highest,
    )


def sampling_fraction_for(
    n: int, population: int | None, sampling_fraction: float | None
) -> float | None:
    """The sampling fraction ``pi = n/N`` from a population size or a given fraction."""
    if population is not None:
        if population < n:
            raise RiskInputError(
                f"population {population} is smaller than the {n} records released"
            )
        pi = n / population
        if sampling_fraction is not None and not math.isclose(pi, sampling_fraction, rel_tol=1e-3):
            raise RiskInputError(
                f"population {population} and sampling fraction {sampling_fraction} disagree "
                f"({n} records make a fraction of {pi:.4g}): give one of them"
            )
        return pi
    if sampling_fraction is not None:
        if not 0 < sampling_fraction <= 1:
            raise RiskInputError(f"sampling fraction must be in (0, 1], got {sampling_fraction}")
        return float(sampling_fraction)
    return None


def figures(sizes: Codes, pi: float | None, threshold: float = DEFAULT_THRESHOLD) -> Figures:
    """Risk figures from the class sizes ``f_k`` (and the sampling fraction, if known)."""
    f = sizes.astype(np.float64)
    n = float(f.sum())
    n_classes = len(f)
    prosecutor = RiskSummary(
        highest=1.0 / float(f.min()),
        average=n_classes / n,
        records_at_risk=float(f[1.0 / f > threshold + _EPSILON].sum()) / n,
    )
    journalist = marketer = uniques = None
    if pi is not None:
        population = np.maximum(f / pi, f)  # F_k = f_k / pi, never below f_k
        success = float((f / population).sum()) / n
        journalist = RiskSummary(
            highest=1.0 / float(population.min()),
            average=max(n_classes / float(population.sum()), success),
            records_at_risk=float(f[1.0 / population > threshold + _EPSILON].sum()) / n,
        )
        marketer = success
        uniques = zayatz_unique_fraction(sizes, pi)
    return Figures(
        n_records=int(n),
        n_classes=n_classes,
        k_anonymity=int(f.min()),
        unique_fraction=float((f == 1).sum()) / n,
        prosecutor=prosecutor,
        journalist=journalist,
        marketer=marketer,
        population_unique_fraction=uniques,
    )


def zayatz_unique_fraction(sizes: Codes, pi: float) -> float:
    """Estimated share of the population that is unique on the quasi-identifiers (Zayatz).

    Zayatz (1991), as in ARX's ``ModelZayatz``: with ``u_i`` the number of sample classes of
    size ``i``, ``K`` the number of classes and ``h(i)`` the hypergeometric probability of
    drawing exactly one of ``i`` members when drawing ``n`` of ``N``,
    ``P(unique in population | unique in sample) = (u_1/K) h(1) / sum_i (u_i/K) h(i)``;
    the population holds ``u_1 P / pi`` uniques, reported as a share of ``N``.
    """
    histogram = Counter(int(s) for s in sizes)
    sample_uniques = histogram.get(1, 0)
    if not sample_uniques:
        return 0.0
    n = int(sizes.sum())
    big_n = max(round(n / pi), n)

    def one_drawn(members: int) -> float:
        if big_n - members < n - 1:
            return 0.0
        return math.exp(math.log(members) + _log_comb(big_n - members, n - 1) - _log_comb(big_n, n))

    k = len(sizes)
    total = sum(count / k * one_drawn(size) for size, count in histogram.items())
    if total <= 0:
        return 0.0
    conditional = (sample_uniques / k) * one_drawn(1) / total
    return min(sample_uniques * conditional / pi / big_n, 1.0)


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)
