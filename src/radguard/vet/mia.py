"""Membership inference audit: LOSS, RMIA (offline/online) and LiRA with reference models.

The audit follows the user's training recipe end to end. Patients are split (seeded) into a
population set Z (never in the target's training data, the RMIA comparison set) and an audit
set A; half of A's patients are the target's members. Reference models are trained with the
same recipe on halves of A and Z chosen in complementary pairs, so with an even number of
references every record is IN for exactly half of them (online attacks) and OUT for the other
half (offline attacks use only those).

Attacks (higher score = more likely a member):
- LOSS (Yeom et al. 2018): log Pr(y|x) under the target.
- RMIA (Zarifzadeh et al., ICML 2024): ratio_x = Pr(x|target) / Pr(x), Pr(x) the mean over
  references (online: all; offline: OUT ones, linearly rescaled with ``a``); the score is the
  share of population records z with ratio_x / ratio_z > gamma. With one population set this
  is a monotone function of ratio_x, so ROC figures rank by ratio_x (no ties at |Z| levels).
- LiRA (Carlini et al. 2022): Gaussian fits of the logit-scaled confidence over IN and OUT
  references with one fixed variance (online), or the OUT fit alone (offline). Meant for 16+
  references; fewer are allowed and flagged in the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.vet.data import Records, VetError, split_patients
from radguard.vet.models import confidence_logit, log_p, log_q, utility_auc
from radguard.vet.parallel import Job, ModelFactory, TrainFn, run_jobs
from radguard.vet.stats import AttackMetrics, attack_metrics, auc, loglog_points, threshold_at_fpr


class Attack(Enum):
    """Membership inference attacks; values are the names used on the command line."""

    LOSS = "loss"
    RMIA_OFFLINE = "rmia-offline"
    RMIA_ONLINE = "rmia-online"
    LIRA_OFFLINE = "lira-offline"
    LIRA_ONLINE = "lira-online"

    @property
    def needs_references(self) -> int:
        return {"loss": 0, "rmia-online": 1}.get(self.value, 2)


@dataclass(frozen=True)
class MiaPolicy:
    """Pass/fail limits, checked against every attack's point estimate (the worst one
    decides). ``max_tpr`` maps an FPR level to the highest TPR allowed there."""

    max_tpr: tuple[tuple[float, float], ...] = ((0.001, 0.01),)
    max_auc: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "max_tpr_at_fpr": {f"{f:g}": t for f, t in self.max_tpr},
            "max_auc": self.max_auc,
            "rule": "fails when any attack's point estimate is above a limit",
        }


@dataclass(frozen=True)
class MiaSettings:
    """How the audit runs. ``primary`` drives per-patient scores, subgroups and exposures."""

    references: int = 4
    attacks: tuple[Attack, ...] = (Attack.LOSS, Attack.RMIA_OFFLINE, Attack.RMIA_ONLINE)
    primary: Attack = Attack.RMIA_ONLINE
    population_fraction: float = 0.2
    seed: int = 0
    workers: int = 2
    threads_per_worker: int = 1
    rmia_gamma: float = 1.0
    rmia_offline_a: float = 0.3
    policy: MiaPolicy = field(default_factory=MiaPolicy)
    top_exposed: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.references <= 256 and self.references != 0:
            raise VetError(f"references must be 0..256, got {self.references}")
        if not 0.05 <= self.population_fraction <= 0.5:
            raise VetError("population_fraction must be within 0.05..0.5")
        for attack in self.attacks:
            if attack.needs_references > self.references:
                raise VetError(
                    f"attack {attack.value} needs at least {attack.needs_references} "
                    f"reference model(s); {self.references} requested"
                )
        if self.primary not in self.attacks:
            raise VetError(f"primary attack {self.primary.value} is not among the attacks run")


@dataclass
class MiaReport:
    """Everything the audit measured; :meth:`to_card` gives the JSON privacy card."""

    settings: MiaSettings
    records: Records
    members: NDArray[np.bool_]
    audited: NDArray[np.bool_]
    scores: dict[Attack, NDArray[np.float64]]
    metrics: dict[Attack, AttackMetrics]
    patient_metrics: AttackMetrics
    patient_scores: list[dict[str, Any]]
    subgroups: dict[str, list[dict[str, Any]]]
    exposed: list[dict[str, Any]]
    target_test_auc: float | None
    reference_test_auc: list[float]
    timings: dict[str, float]
    execution: str
    notes: list[str]

    @property
    def passed(self) -> bool:
        return all(check["passed"] for check in self.checks())

    def checks(self) -> list[dict[str, Any]]:
        """One row per (attack, limit)."""
        rows = []
        policy = self.settings.policy
        for attack, metric in self.metrics.items():
            for fpr, limit in policy.max_tpr:
                value = metric.at(fpr).tpr if fpr in {t.fpr_target for t in metric.tpr} else None
                if value is None:
                    from radguard.vet.stats import tpr_at_fpr

                    value = tpr_at_fpr(self.scores[attack], self._member_flags, fpr).tpr
                rows.append(
                    {
                        "check": f"{attack.value}: TPR at {fpr:g} FPR",
                        "value": value,
                        "limit": limit,
                        "passed": value <= limit,
                    }
                )
            if policy.max_auc is not None:
                rows.append(
                    {
                        "check": f"{attack.value}: AUC",
                        "value": metric.auc,
                        "limit": policy.max_auc,
                        "passed": metric.auc <= policy.max_auc,
                    }
                )
        return rows

    @property
    def _member_flags(self) -> NDArray[np.bool_]:
        return self.members[self.audited]

    def to_card(self) -> dict[str, Any]:
        """The JSON privacy card: threat model, data, metrics, worst cases, plots, verdict."""
        flags = self._member_flags
        patients = self.records.patients[self.audited]
        scores = {a.value: s.tolist() for a, s in self.scores.items()}
        return {
            "kind": "membership-inference",
            "threat_model": (
                "Black-box adversary who queries the model's confidence on a record and knows "
                "the training recipe and data distribution (trains reference models on "
                "population data). Membership is per patient: every image of a patient is on "
                "the same side."
            ),
            "data": {
                "records": len(self.records),
                "patients": len(self.records.patient_keys()),
                "audited_records": int(self.audited.sum()),
                "members": int(flags.sum()),
                "nonmembers": int((~flags).sum()),
                "population_records": int((~self.audited).sum()),
                "split": (
                    f"patient-level, seed {self.settings.seed}: "
                    f"{self.settings.population_fraction:.0%} of patients as population Z, "
                    "half of the rest as members"
                ),
            },
            "settings": {
                "references": self.settings.references,
                "attacks": [a.value for a in self.settings.attacks],
                "primary": self.settings.primary.value,
                "rmia_gamma": self.settings.rmia_gamma,
                "rmia_offline_a": self.settings.rmia_offline_a,
                "seed": self.settings.seed,
                "execution": self.execution,
            },
            "metrics": {a.value: m.to_json() for a, m in self.metrics.items()},
            "patient_metrics": self.patient_metrics.to_json(),
            "utility": {
                "target_test_auc": self.target_test_auc,
                "reference_test_auc": self.reference_test_auc,
            },
            "roc": {a.value: loglog_points(s, flags) for a, s in self.scores.items()},
            "subgroups": self.subgroups,
            "most_exposed_patients": self.exposed,
            "per_record": {
                "patient": [str(p) for p in patients],
                "member": flags.astype(int).tolist(),
                "scores": scores,
            },
            "per_patient": self.patient_scores,
            "policy": self.settings.policy.to_json(),
            "checks": self.checks(),
            "verdict": "pass" if self.passed else "fail",
            "timings_s": self.timings,
            "notes": self.notes,
        }


def _reference_splits(records: Records, count: int, seed: int) -> list[NDArray[np.bool_]]:
    """Training masks for ``count`` references: complementary pairs of patient halves."""
    keys = records.patient_keys()
    rng = np.random.default_rng(seed + 7919)
    masks: list[NDArray[np.bool_]] = []
    while len(masks) < count:
        half = rng.permutation(keys)[: len(keys) // 2]
        inside = np.isin(records.patients, half)
        masks.append(inside)
        if len(masks) < count:
            masks.append(~inside)
    return masks


def _log_mean_p(phi: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """log of the weighted mean of Pr(y|x) over references (axis 0), exact near 1."""
    total = weights.sum(axis=0)
    mean_q = (np.exp(log_q(phi)) * weights).sum(axis=0) / total
    mean_p = (np.exp(log_p(phi)) * weights).sum(axis=0) / total
    chosen = np.where(mean_q < 0.5, np.log1p(-mean_q), np.log(np.maximum(mean_p, 1e-300)))
    return np.asarray(chosen, dtype=np.float64)


def rmia_scores(
    target: NDArray[np.float64],
    references: NDArray[np.float64],
    inside: NDArray[np.bool_],
    population: NDArray[np.bool_],
    online: bool,
    a: float = 0.3,
    gamma: float = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(log ratio_x used for ranking, RMIA score in [0, 1]) for every record.

    ``target`` and ``references`` are phi = logit Pr(y|x) (see :func:`confidence_logit`).
    """
    if online:
        log_marginal = _log_mean_p(references, np.ones_like(references))
    else:
        outside = (~inside).astype(np.float64)
        if np.any(outside.sum(axis=0) == 0):
            raise VetError("offline RMIA needs an OUT reference for every record (>= 2 refs)")
        # Pr(x) = ((1 + a) Pr_out(x) + (1 - a)) / 2 = 1 - (1 + a) / 2 * (1 - Pr_out(x))
        mean_q = (np.exp(log_q(references)) * outside).sum(axis=0) / outside.sum(axis=0)
        log_marginal = np.log1p(-0.5 * (1 + a) * mean_q)
    log_ratio = log_p(target) - log_marginal
    population_ratios = np.sort(log_ratio[population])
    score = np.searchsorted(population_ratios, log_ratio - np.log(gamma), side="left") / max(
        1, len(population_ratios)
    )
    return log_ratio, score.astype(np.float64)


def lira_scores(
    target: NDArray[np.float64],
    references: NDArray[np.float64],
    inside: NDArray[np.bool_],
    online: bool,
) -> NDArray[np.float64]:
    """LiRA on phi with a fixed (pooled) variance; online uses IN and OUT fits, offline OUT."""
    phi_t, phi = target, references
    outside = ~inside
    n_out, n_in = outside.sum(axis=0), inside.sum(axis=0)
    if np.any(n_out == 0) or (online and np.any(n_in == 0)):
        raise VetError("LiRA needs IN and OUT references for every record (>= 2 refs)")
    mu_out = (phi * outside).sum(axis=0) / n_out
    residual_out = (phi - mu_out) * outside
    if not online:
        sigma = np.sqrt((residual_out**2).sum() / max(1, outside.sum() - phi.shape[1])) + 1e-6
        return np.asarray((phi_t - mu_out) / sigma, dtype=np.float64)
    mu_in = (phi * inside).sum(axis=0) / n_in
    residual = residual_out + (phi - mu_in) * inside
    sigma = np.sqrt((residual**2).sum() / max(1, phi.size - 2 * phi.shape[1])) + 1e-6
    return np.asarray(((phi_t - mu_out) ** 2 - (phi_t - mu_in) ** 2) / (2 * sigma**2))


def _patients(
    scores: NDArray[np.float64], flags: NDArray[np.bool_], patients: NDArray[Any]
) -> tuple[NDArray[Any], NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64]]:
    keys, inverse, counts = np.unique(patients, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse, weights=scores) / counts
    member = np.bincount(inverse, weights=flags.astype(float)) > 0
    return keys, mean, member, counts


def _subgroups(
    records: Records, scores: NDArray[np.float64], flags: NDArray[np.bool_]
) -> dict[str, list[dict[str, Any]]]:
    threshold = threshold_at_fpr(scores[~flags], 0.01)
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, column in records.groups.items():
        rows = []
        for value in np.unique(column):
            inside = column == value
            pos, neg = flags & inside, ~flags & inside
            rows.append(
                {
                    "value": str(value),
                    "members": int(pos.sum()),
                    "nonmembers": int(neg.sum()),
                    "auc": auc(scores[inside], flags[inside]),
                    "tpr_at_global_1pct_threshold": float(np.mean(scores[pos] > threshold))
                    if pos.any()
                    else None,
                    "fpr_at_global_1pct_threshold": float(np.mean(scores[neg] > threshold))
                    if neg.any()
                    else None,
                }
            )
        tables[name] = rows
    return tables


def mia(
    model_factory: ModelFactory,
    train_fn: TrainFn,
    dataset: Records,
    settings: MiaSettings | None = None,
    test: Records | None = None,
    target_model: Any | None = None,
    members: NDArray[np.bool_] | None = None,
) -> MiaReport:
    """Audit a training recipe for membership leakage.

    ``model_factory()`` builds a fresh model; ``train_fn(model, records, seed)`` trains it and
    returns it (the user's own recipe); ``dataset`` holds every record the audit may use.
    The target model is trained by the same recipe on half of the audited patients, so the
    audit measures what *this recipe* leaks. ``test`` records give the utility figure.

    To audit a model already trained, pass it as ``target_model`` with ``members`` (a mask
    over ``dataset`` of the records it was trained on); population records are then drawn
    from the non-members only.
    """
    settings = settings or MiaSettings()
    start = time.perf_counter()
    population, audited = split_patients(dataset, settings.population_fraction, settings.seed)
    if target_model is None:
        chosen, _ = split_patients(dataset.subset(audited), 0.5, settings.seed + 1)
        members = np.zeros(len(dataset), dtype=bool)
        members[np.flatnonzero(audited)[chosen]] = True
    else:
        if members is None or len(members) != len(dataset):
            raise VetError("a target_model needs a members mask over the dataset")
        members = np.asarray(members, dtype=bool)
        population = population & ~members
        audited = ~population
    audit_records = dataset.subset(audited)
    if members.sum() < 10 or (audited & ~members).sum() < 10:
        raise VetError("too few records: the audit needs at least 10 members and non-members")
    splits = _reference_splits(dataset, settings.references, settings.seed)
    threads = settings.threads_per_worker
    jobs: list[Job] = []
    if target_model is None:
        jobs.append(
            Job("target", model_factory, train_fn, dataset, members, settings.seed, test, threads)
        )
    jobs += [
        Job(
            f"reference-{i}",
            model_factory,
            train_fn,
            dataset,
            m,
            settings.seed + 101 + i,
            test,
            threads,
        )
        for i, m in enumerate(splits)
    ]
    results, execution = run_jobs(jobs, settings.workers)
    all_results = list(results)
    trained = time.perf_counter()
    if target_model is None:
        target, target_auc = results[0].phi, results[0].test_auc
        results = results[1:]
    else:
        target = confidence_logit(target_model, dataset)
        target_auc = (
            utility_auc(target_model, test)
            if test is not None and not test.is_segmentation
            else None
        )
    references = np.stack([r.phi for r in results]) if splits else np.empty((0,))
    inside = np.stack(splits) if splits else np.empty((0,), dtype=bool)
    scores: dict[Attack, NDArray[np.float64]] = {}
    notes: list[str] = []
    for attack in settings.attacks:
        if attack is Attack.LOSS:
            full = target.copy()  # phi is monotone in log Pr(y|x), i.e. in -loss
        elif attack in (Attack.RMIA_ONLINE, Attack.RMIA_OFFLINE):
            full, _ = rmia_scores(
                target,
                references,
                inside,
                population,
                attack is Attack.RMIA_ONLINE,
                settings.rmia_offline_a,
                settings.rmia_gamma,
            )
        else:
            full = lira_scores(target, references, inside, attack is Attack.LIRA_ONLINE)
            if settings.references < 16:
                notes.append(
                    f"{attack.value} ran with {settings.references} references; it is meant "
                    "for 16 or more (the Gaussian fits are rough with fewer)"
                )
        scores[attack] = full[audited]
    flags = members[audited]
    metrics = {a: attack_metrics(s, flags, settings.seed) for a, s in scores.items()}
    primary = scores[settings.primary]
    keys, patient_mean, patient_member, counts = _patients(primary, flags, audit_records.patients)
    patient_metrics = attack_metrics(patient_mean, patient_member, settings.seed)
    negatives = np.sort(patient_mean[~patient_member])
    beaten = len(negatives) - np.searchsorted(negatives, patient_mean, side="left")
    p_values = beaten / max(1, len(negatives))
    per_patient: list[dict[str, Any]] = [
        {
            "patient": str(k),
            "member": bool(m),
            "images": int(c),
            "score": float(s),
            "share_of_nonmembers_scoring_higher": float(p),
        }
        for k, m, c, s, p in zip(keys, patient_member, counts, patient_mean, p_values, strict=True)
    ]
    exposed = sorted(
        (row for row in per_patient if row["member"]), key=lambda r: -float(r["score"])
    )
    exposed = exposed[: settings.top_exposed]
    for row in exposed:
        index = np.flatnonzero(audit_records.patients.astype(str) == row["patient"])
        row["groups"] = {n: str(c[index[0]]) for n, c in audit_records.groups.items()}
    return MiaReport(
        settings=settings,
        records=dataset,
        members=members,
        audited=audited,
        scores=scores,
        metrics=metrics,
        patient_metrics=patient_metrics,
        patient_scores=per_patient,
        subgroups=_subgroups(audit_records, primary, flags),
        exposed=exposed,
        target_test_auc=target_auc,
        reference_test_auc=[r.test_auc for r in results if r.test_auc is not None],
        timings={
            "train_s": round(trained - start, 2),
            "total_s": round(time.perf_counter() - start, 2),
            "per_model_s": round(float(np.mean([r.seconds for r in results] or [0.0])), 2),
            # CPU seconds of every training job together: what an idle machine needs.
            "training_cpu_s": round(sum(r.cpu_seconds for r in all_results), 2),
        },
        execution=execution,
        notes=notes,
    )
