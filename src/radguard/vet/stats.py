"""Attack metrics: ROC, AUC with a bootstrap interval, TPR at fixed FPR with Clopper-Pearson.

Everything is numpy only (scipy's beta quantile for the exact binomial interval), so the
figures are reproducible from the per-record scores stored in the JSON card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FPR_LEVELS: tuple[float, ...] = (0.01, 0.001, 0.0)
CONFIDENCE = 0.95


def clopper_pearson(successes: int, trials: int, level: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion."""
    from scipy.stats import beta

    if trials <= 0:
        return 0.0, 1.0
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    )
    return low, high


def auc(scores: NDArray[np.floating[Any]], members: NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half)."""
    pos, neg = scores[members], scores[~members]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.arange(1, len(order) + 1)
    values = np.concatenate([pos, neg])
    # Average ranks over ties.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def bootstrap_auc_interval(
    scores: NDArray[np.floating[Any]],
    members: NDArray[np.bool_],
    resamples: int = 500,
    seed: int = 0,
    level: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, members and non-members resampled apart."""
    rng = np.random.default_rng(seed)
    pos, neg = scores[members], scores[~members]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    flags = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    values = []
    for _ in range(resamples):
        sample = np.concatenate(
            [pos[rng.integers(0, len(pos), len(pos))], neg[rng.integers(0, len(neg), len(neg))]]
        )
        values.append(auc(sample, flags))
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


@dataclass(frozen=True)
class TprAtFpr:
    """TPR at a target FPR: the threshold is set on the non-members' scores."""

    fpr_target: float
    fpr_achieved: float
    threshold: float
    tpr: float
    low: float
    high: float
    true_positives: int
    members: int
    nonmembers_above: int
    nonmembers: int

    def to_json(self) -> dict[str, Any]:
        return {
            "fpr_target": self.fpr_target,
            "fpr_achieved": self.fpr_achieved,
            "threshold": self.threshold,
            "tpr": self.tpr,
            "ci95": [self.low, self.high],
            "true_positives": self.true_positives,
            "members": self.members,
            "nonmembers_above": self.nonmembers_above,
            "nonmembers": self.nonmembers,
            "chance_tpr": self.fpr_achieved,
            "within_chance": self.low <= self.fpr_achieved <= self.high
            or self.tpr <= self.fpr_achieved,
        }


def threshold_at_fpr(nonmember_scores: NDArray[np.floating[Any]], fpr: float) -> float:
    """Smallest threshold with at most ``floor(fpr * n)`` non-members strictly above it."""
    ordered = np.sort(nonmember_scores)[::-1]
    allowed = int(np.floor(fpr * len(ordered) + 1e-9))
    if allowed >= len(ordered):
        return float(-np.inf)
    return float(ordered[allowed])


def tpr_at_fpr(
    scores: NDArray[np.floating[Any]], members: NDArray[np.bool_], fpr: float
) -> TprAtFpr:
    """TPR at ``fpr`` with a Clopper-Pearson 95% interval on the members flagged.

    The interval is conditional on the threshold (set from the non-members), so it does not
    include the threshold's own sampling error; at 0.1% FPR with 1,000 non-members the
    threshold rests on a single non-member, which is why ``fpr_achieved`` is reported too.
    """
    pos, neg = scores[members], scores[~members]
    threshold = threshold_at_fpr(neg, fpr)
    hits = int(np.sum(pos > threshold))
    above = int(np.sum(neg > threshold))
    low, high = clopper_pearson(hits, len(pos))
    return TprAtFpr(
        fpr_target=fpr,
        fpr_achieved=above / max(1, len(neg)),
        threshold=threshold,
        tpr=hits / max(1, len(pos)),
        low=low,
        high=high,
        true_positives=hits,
        members=len(pos),
        nonmembers_above=above,
        nonmembers=len(neg),
    )


def roc_curve(
    scores: NDArray[np.floating[Any]], members: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_members = scores[order], members[order]
    distinct = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    tps = np.cumsum(sorted_members)[distinct]
    fps = np.cumsum(~sorted_members)[distinct]
    pos, neg = max(1, int(members.sum())), max(1, int((~members).sum()))
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos]


@dataclass(frozen=True)
class AttackMetrics:
    """AUC with its bootstrap interval and TPR at 1%, 0.1% and 0% FPR."""

    auc: float
    auc_low: float
    auc_high: float
    tpr: tuple[TprAtFpr, ...]

    def at(self, fpr: float) -> TprAtFpr:
        for item in self.tpr:
            if item.fpr_target == fpr:
                return item
        raise KeyError(fpr)

    def to_json(self) -> dict[str, Any]:
        return {
            "auc": self.auc,
            "auc_ci95": [self.auc_low, self.auc_high],
            "auc_interval": "percentile bootstrap, 500 resamples, members/non-members apart",
            "tpr_at_fpr": {f"{t.fpr_target:g}": t.to_json() for t in self.tpr},
            "tpr_interval": "Clopper-Pearson 95%, conditional on the threshold",
        }


def attack_metrics(
    scores: NDArray[np.floating[Any]],
    members: NDArray[np.bool_],
    seed: int = 0,
    levels: tuple[float, ...] = FPR_LEVELS,
) -> AttackMetrics:
    """All headline figures for one attack's scores."""
    low, high = bootstrap_auc_interval(scores, members, seed=seed)
    return AttackMetrics(
        auc=auc(scores, members),
        auc_low=low,
        auc_high=high,
        tpr=tuple(tpr_at_fpr(scores, members, level) for level in levels),
    )


def loglog_points(
    scores: NDArray[np.floating[Any]], members: NDArray[np.bool_], points: int = 200
) -> list[tuple[float, float]]:
    """A thinned ROC (FPR, TPR) for the log-log plot, dense at low FPR."""
    fpr, tpr = roc_curve(scores, members)
    neg = max(1, int((~members).sum()))
    grid = np.unique(np.r_[np.geomspace(1.0 / neg, 1.0, points), 1.0])
    index = np.searchsorted(fpr, grid, side="right") - 1
    return [(float(f), float(tpr[i])) for f, i in zip(grid, index, strict=True)]
