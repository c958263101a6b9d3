"""Re-identification risk of a released set from its quasi-identifiers (issue 3).

``collect_records`` reads the released headers into one record per patient (or study, or
series); ``assess`` measures k-anonymity, uniqueness and prosecutor, journalist and marketer
risk; ``suggest`` and ``plan`` propose generalizations with the risk after them. How risk is
computed, and what it cannot see: ``docs/risk.md``.
"""

from radguard.risk.generalize import (
    DEFAULT_TARGET,
    Generalization,
    Method,
    Suggestion,
    hierarchy,
    plan,
    suggest,
)
from radguard.risk.measures import (
    DEFAULT_THRESHOLD,
    Figures,
    RecordRisk,
    RiskReport,
    RiskSummary,
    assess,
)
from radguard.risk.records import (
    DEFAULT_QIS,
    MISSING,
    Record,
    RiskInputError,
    Scan,
    Unit,
    collect_records,
    header_of,
    records_from_headers,
    scan_folder,
)

__all__ = [
    "DEFAULT_QIS",
    "DEFAULT_TARGET",
    "DEFAULT_THRESHOLD",
    "MISSING",
    "Figures",
    "Generalization",
    "Method",
    "Record",
    "RecordRisk",
    "RiskInputError",
    "RiskReport",
    "RiskSummary",
    "Scan",
    "Suggestion",
    "Unit",
    "assess",
    "collect_records",
    "header_of",
    "hierarchy",
    "plan",
    "records_from_headers",
    "scan_folder",
    "suggest",
]
