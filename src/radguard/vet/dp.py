"""Differentially private training: a thin layer over Opacus with patient-level guarantees.

- ``ModuleValidator.fix`` makes the model DP-compatible (BatchNorm becomes GroupNorm).
- Sampling is Poisson over *patients*; the per-image gradient samples of a patient are summed
  before Opacus clips them, so each patient's whole contribution is bounded by the clipping
  norm and epsilon is per patient, not per image.
- The PRV accountant (Gopi et al. 2021) finds the noise for the target epsilon; delta defaults
  to 1 / (10 N) with N the number of patients (always <= 1/N).
- :func:`train_dp` can hold half the patients out and run the membership audit on the very
  model it returns, so its epsilon is reported next to the empirical attack figures.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radguard.vet.data import Records, VetError, require_torch, split_patients
from radguard.vet.parallel import ModelFactory


@dataclass(frozen=True)
class DpSettings:
    """DP-SGD settings; ``delta`` None means 1 / (10 x patients)."""

    target_epsilon: float = 8.0
    delta: float | None = None
    epochs: int = 20
    batch_patients: int = 256
    lr: float = 1e-2
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    threads: int = 0
    optimizer: str = "adam"  # or "sgd" (momentum 0.9)

    def __post_init__(self) -> None:
        if self.target_epsilon <= 0:
            raise VetError("target epsilon must be positive")
        if self.accountant not in ("prv", "rdp", "gdp"):
            raise VetError(f"unknown accountant {self.accountant!r} (prv, rdp or gdp)")


@dataclass(frozen=True)
class DpAccount:
    """What the accountant says about one training run."""

    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    patients: int
    max_images_per_patient: int
    accountant: str

    def to_json(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "patients": self.patients,
            "max_images_per_patient": self.max_images_per_patient,
            "accountant": self.accountant,
            "unit": "patient (all images of a patient clipped together)",
        }


def _patient_dataset(records: Records) -> tuple[Any, int]:
    """A torch Dataset with one item per patient: padded images, labels and a mask."""
    torch = require_torch()
    keys, inverse = np.unique(records.patients, return_inverse=True)
    groups = [np.flatnonzero(inverse == i) for i in range(len(keys))]
    width = max(len(g) for g in groups)
    images, targets = records.tensors()

    class Patients(torch.utils.data.Dataset):  # type: ignore[misc, name-defined]
        def __len__(self) -> int:
            return len(groups)

        def __getitem__(self, index: int) -> tuple[Any, Any, Any]:
            rows = torch.as_tensor(groups[index])
            pad = width - len(rows)
            x = images[rows]
            y = targets[rows]
            mask = torch.ones(width)
            if pad:
                x = torch.cat([x, torch.zeros((pad, *x.shape[1:]))])
                y = torch.cat([y, torch.zeros((pad, *y.shape[1:]), dtype=y.dtype)])
                mask[len(rows) :] = 0
            return x, y, mask

    return Patients(), width


def train_private(
    model: Any, records: Records, seed: int, settings: DpSettings
) -> tuple[Any, DpAccount]:
    """Train ``model`` with DP-SGD on ``records``; returns the plain (unwrapped) model."""
    torch = require_torch()
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(seed)
    model = ModuleValidator.fix(model)
    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise VetError("model cannot be made DP-compatible: " + "; ".join(map(str, problems)))
    dataset, width = _patient_dataset(records)
    patients = len(dataset)
    delta = settings.delta if settings.delta is not None else 1.0 / (10 * patients)
    if delta > 1.0 / patients:
        raise VetError(f"delta {delta:g} is above 1/N = {1 / patients:g} (N patients)")
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=min(settings.batch_patients, patients),
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
        if settings.optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=settings.lr)
    )
    engine = PrivacyEngine(accountant=settings.accountant, secure_mode=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, optimizer, loader = engine.make_private_with_epsilon(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            target_epsilon=settings.target_epsilon,
            target_delta=delta,
            epochs=settings.epochs,
            max_grad_norm=settings.max_grad_norm,
            poisson_sampling=True,
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    private.train()
    steps = 0
    for _ in range(settings.epochs):
        for x, y, mask in loader:
            optimizer.zero_grad()
            if len(x) == 0:
                optimizer.step()
                steps += 1
                continue
            batch = x.shape[0]
            flat_x = x.reshape(batch * width, *x.shape[2:])
            flat_y = y.reshape(batch * width, *y.shape[2:])
            losses = loss_fn(private(flat_x), flat_y)
            if losses.ndim > 1:
                losses = losses.flatten(1).mean(1)
            # Opacus' "mean" reduction rescales grad samples by the rows, so each row holds
            # its own image's gradient; masked padding rows contribute zero.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                (losses * mask.reshape(-1)).mean().backward()
            if width > 1:
                for p in private.parameters():
                    sample = getattr(p, "grad_sample", None)
                    if isinstance(sample, list):
                        sample = torch.cat(sample)
                    if sample is not None:
                        p.grad_sample = sample.reshape(batch, width, *sample.shape[1:]).sum(1)
            optimizer.step()
            steps += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epsilon = float(engine.get_epsilon(delta))
    plain = private._module
    plain.eval()
    return plain, DpAccount(
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=float(optimizer.noise_multiplier),
        sample_rate=float(min(settings.batch_patients, patients) / patients),
        steps=steps,
        patients=patients,
        max_images_per_patient=width,
        accountant=settings.accountant,
    )


@dataclass(frozen=True)
class DpRecipe:
    """A picklable ``train_fn`` running :func:`train_private` (for the audit's references)."""

    settings: DpSettings = field(default_factory=DpSettings)

    def __call__(self, model: Any, records: Records, seed: int) -> Any:
        trained, _ = train_private(model, records, seed, self.settings)
        return trained


@dataclass
class DpResult:
    """The trained model, its accountant figures, utility and (optionally) its audit."""

    model: Any
    account: DpAccount
    test_auc: float | None
    audit: Any | None
    seconds: float
    trained_on: str

    def to_card(self) -> dict[str, Any]:
        card: dict[str, Any] = {
            "kind": "dp-training",
            "threat_model": (
                "(epsilon, delta)-differential privacy per patient against any adversary "
                "who sees the final model; the audit below measures what a black-box "
                "membership attacker achieves against this very model."
            ),
            "data": {"trained_on": self.trained_on, **self.account.to_json()},
            "utility": {"test_auc": self.test_auc},
            "timings_s": {"total_s": round(self.seconds, 2)},
        }
        checks = [
            {
                "check": "delta <= 1/N patients",
                "value": self.account.delta,
                "limit": 1 / self.account.patients,
                "passed": self.account.delta <= 1 / self.account.patients,
            }
        ]
        if self.audit is not None:
            audit = self.audit.to_card()
            card["audit"] = {k: audit[k] for k in ("metrics", "patient_metrics", "settings")}
            card["metrics"] = audit["metrics"]
            card["roc"] = audit["roc"]
            card["patient_metrics"] = audit["patient_metrics"]
            card["most_exposed_patients"] = audit["most_exposed_patients"]
            card["subgroups"] = audit["subgroups"]
            checks += audit["checks"]
        card["checks"] = checks
        card["verdict"] = "pass" if all(c["passed"] for c in checks) else "fail"
        return card


def train_dp(
    model_factory: ModelFactory,
    dataset: Records,
    settings: DpSettings | None = None,
    test: Records | None = None,
    audit: Any | None = None,
    seed: int = 0,
) -> DpResult:
    """Train with DP-SGD; with ``audit`` (a :class:`MiaSettings`) half the audited patients
    are held out and the membership audit runs on the returned model itself."""
    from radguard.vet.mia import mia
    from radguard.vet.models import utility_auc

    settings = settings or DpSettings()
    start = time.perf_counter()
    torch = require_torch()
    torch.manual_seed(seed)
    if audit is None:
        model, account = train_private(model_factory(), dataset, seed, settings)
        report = None
        trained_on = "all records"
    else:
        population, _ = split_patients(dataset, audit.population_fraction, audit.seed)
        audited = ~population
        chosen, _ = split_patients(dataset.subset(audited), 0.5, audit.seed + 1)
        members = np.zeros(len(dataset), dtype=bool)
        members[np.flatnonzero(audited)[chosen]] = True
        model, account = train_private(model_factory(), dataset.subset(members), seed, settings)
        report = mia(
            model_factory,
            DpRecipe(settings),
            dataset,
            audit,
            test=test,
            target_model=model,
            members=members,
        )
        trained_on = "members half of the audit split (the rest held out for the audit)"
    test_auc = utility_auc(model, test) if test is not None else None
    return DpResult(model, account, test_auc, report, time.perf_counter() - start, trained_on)
