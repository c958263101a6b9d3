"""Gradient inversion of a federated client update, and the defences that stop it.

The attacker (an honest-but-curious server) sees one client's model update: the parameter
change after ``local_steps`` SGD steps on a private batch. It optimizes dummy images so that
simulating the same local steps on them gives an update of the same direction ("Inverting
Gradients", Geiping et al. 2020): cosine distance + total variation, plus a BatchNorm prior
(Yin et al. 2021) when the model has BatchNorm layers (the batch means and variances follow
from the running statistics the client reports). Batch-1 labels are read from the sign of the
last layer's bias update (iDLG); for larger batches the attacker is given the labels (the
stronger attacker). Reconstructions are scored by SSIM and PSNR against the true images
(optimal one-to-one matching for batches).

Defences act on the update, in numpy, so the Flower mod applies exactly the same code:
clipping to an L2 norm plus Gaussian noise (std ``noise_multiplier x clip_norm``), and
percentile sparsification (entries below the given magnitude percentile of their tensor
become zero).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.vet.data import Records, VetError, require_torch
from radguard.vet.parallel import ModelFactory

Arrays = list[NDArray[np.float32]]


def clip_and_noise(
    update: Arrays, clip_norm: float, noise_multiplier: float, rng: np.random.Generator
) -> Arrays:
    """Scale the whole update to L2 norm <= ``clip_norm``, then add N(0, (sigma C)^2)."""
    norm = float(np.sqrt(sum(float(np.sum(u.astype(np.float64) ** 2)) for u in update)))
    scale = min(1.0, clip_norm / (norm + 1e-12))
    std = noise_multiplier * clip_norm
    return [
        (u * scale + rng.normal(0.0, std, u.shape)).astype(np.float32) if std else u * scale
        for u in update
    ]


def sparsify(update: Arrays, percentile: float) -> Arrays:
    """Zero every entry whose magnitude is below the ``percentile`` of its tensor."""
    out = []
    for u in update:
        if u.size == 0:
            out.append(u)
            continue
        cut = np.percentile(np.abs(u), percentile)
        out.append(np.where(np.abs(u) >= cut, u, 0).astype(np.float32))
    return out


@dataclass(frozen=True)
class Defence:
    """What the client does to its update before sending it; all-None is no defence."""

    clip_norm: float | None = None
    noise_multiplier: float = 0.0
    sparsify_percentile: float | None = None
    seed: int = 0

    @property
    def name(self) -> str:
        parts = []
        if self.clip_norm is not None:
            parts.append(f"clip {self.clip_norm:g} + noise {self.noise_multiplier:g}")
        if self.sparsify_percentile is not None:
            parts.append(f"sparsify p{self.sparsify_percentile:g}")
        return " & ".join(parts) or "none"

    def apply(self, update: Arrays, rng: np.random.Generator | None = None) -> Arrays:
        rng = rng or np.random.default_rng(self.seed)
        if self.sparsify_percentile is not None:
            update = sparsify(update, self.sparsify_percentile)
        if self.clip_norm is not None:
            update = clip_and_noise(update, self.clip_norm, self.noise_multiplier, rng)
        return update


NO_DEFENCE = Defence()
# Chosen on the PneumoniaMNIST fixture (bench/bench_vet.py): the batch-1 attack falls below
# SSIM 0.2 while FedAvg training under it keeps test AUC within 0.05 of undefended training.
DEFAULT_DEFENCE = Defence(clip_norm=1.0, noise_multiplier=0.05)


@dataclass(frozen=True)
class InversionSettings:
    """Attack and sweep settings."""

    iterations: int = 300
    lr: float = 0.1
    tv_weight: float = 1e-2
    bn_weight: float = 1e-2
    client_lr: float = 0.1
    batch_sizes: tuple[int, ...] = (1, 4, 8)
    local_steps: tuple[int, ...] = (1, 3)
    defences: tuple[Defence, ...] = field(default_factory=lambda: (NO_DEFENCE, DEFAULT_DEFENCE))
    trials: int = 2
    seed: int = 0
    threads: int = 1  # one thread is fastest for the small double-backward passes
    max_ssim: float = 0.2


def _flat(tensors: Any) -> Any:
    torch = require_torch()
    return torch.cat([t.reshape(-1) for t in tensors])


def _stats_hook(layer: Any, sink: list[tuple[Any, Any]]) -> Any:
    """Record the per-channel mean and variance of the layer's input into ``sink``."""
    return layer.register_forward_hook(
        lambda _m, inp, _o: sink.append((inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3))))
    )


def _bn_layers(model: Any) -> list[Any]:
    torch = require_torch()
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def client_update(
    model: Any, images: Any, labels: Any, local_steps: int, lr: float
) -> tuple[Arrays, list[tuple[Any, Any]]]:
    """theta_0 - theta_E after ``local_steps`` full-batch SGD steps, and the BatchNorm batch
    statistics (mean, var) per layer of the first step."""
    torch = require_torch()
    from torch.func import functional_call

    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    stats: list[tuple[Any, Any]] = []
    hooks = [_stats_hook(layer, stats) for layer in _bn_layers(model)]
    model.train()
    current = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    for step in range(local_steps):
        out = functional_call(model, {**current, **buffers}, (images,))
        if step == 0:
            for hook in hooks:
                hook.remove()
        loss = torch.nn.functional.cross_entropy(out, labels)
        grads = torch.autograd.grad(loss, list(current.values()))
        current = {
            k: (v - lr * g).detach().requires_grad_(True)
            for (k, v), g in zip(current.items(), grads, strict=True)
        }
    update = [(params[k] - current[k].detach()).numpy().astype(np.float32) for k in params]
    return update, [(m.detach(), v.detach()) for m, v in stats]


def infer_label(model: Any, update: Arrays) -> int:
    """iDLG: the true class's last-layer bias gradient is the only negative one, so its
    update (theta_0 - theta_1 = lr x gradient) is the smallest."""
    names = [k for k, _ in model.named_parameters()]
    bias = update[len(names) - 1]
    return int(np.argmin(bias))


def invert(
    model: Any,
    update: Arrays,
    shape: tuple[int, ...],
    labels: Any,
    local_steps: int = 1,
    settings: InversionSettings | None = None,
    bn_stats: list[tuple[Any, Any]] | None = None,
) -> Any:
    """Reconstruct a batch of ``shape`` (N, C, H, W) from a client update."""
    torch = require_torch()
    from torch.func import functional_call

    settings = settings or InversionSettings()
    torch.manual_seed(settings.seed)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    target = _flat([torch.from_numpy(u) for u in update])
    latent = torch.zeros(shape).uniform_(-0.5, 0.5).requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=settings.lr)
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, [int(settings.iterations * f) for f in (0.5, 0.75, 0.9)], 0.3
    )
    layers = _bn_layers(model)
    model.train()
    for _ in range(settings.iterations):
        optimizer.zero_grad()
        x = torch.sigmoid(latent)
        seen: list[tuple[Any, Any]] = []
        hooks = [_stats_hook(layer, seen) for layer in layers] if bn_stats else []
        current = dict(params)
        for step in range(local_steps):
            out = functional_call(model, {**current, **buffers}, (x,))
            if step == 0:
                for hook in hooks:
                    hook.remove()
            loss = torch.nn.functional.cross_entropy(out, labels)
            grads = torch.autograd.grad(loss, list(current.values()), create_graph=True)
            current = {
                k: v - settings.client_lr * g
                for (k, v), g in zip(current.items(), grads, strict=True)
            }
        simulated = _flat([params[k] - current[k] for k in params])
        objective = 1 - torch.nn.functional.cosine_similarity(simulated, target, dim=0)
        tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
            x[..., :, 1:] - x[..., :, :-1]
        ).abs().mean()
        objective = objective + settings.tv_weight * tv
        if bn_stats:
            prior = sum(
                ((m - tm) ** 2).mean() + ((v - tv_) ** 2).mean()
                for (m, v), (tm, tv_) in zip(seen, bn_stats, strict=False)
            )
            objective = objective + settings.bn_weight * prior
        objective.backward()
        optimizer.step()
        schedule.step()
    return torch.sigmoid(latent).detach()


def match_scores(reconstructed: Any, truth: Any) -> tuple[float, float]:
    """Mean SSIM and PSNR after the best one-to-one matching of reconstructions to images."""
    torch = require_torch()
    from scipy.optimize import linear_sum_assignment

    from radguard.vet.memorization import ssim_pairs

    n = len(truth)
    grid = (
        ssim_pairs(reconstructed.repeat_interleave(n, 0), truth.repeat(n, 1, 1, 1))
        .reshape(n, n)
        .numpy()
    )
    rows, cols = linear_sum_assignment(-grid)
    mse = ((reconstructed[rows] - truth[cols]) ** 2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1.0 / (mse + 1e-10))).mean()
    return float(grid[rows, cols].mean()), float(psnr)


@dataclass
class GradientReport:
    """One row per (defence, batch size, local steps): mean SSIM/PSNR over trials."""

    rows: list[dict[str, Any]]
    utility: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    settings: InversionSettings
    seconds: float

    def ssim(self, defence: Defence, batch: int = 1, steps: int = 1) -> float:
        for row in self.rows:
            if (row["defence"], row["batch_size"], row["local_steps"]) == (
                defence.name,
                batch,
                steps,
            ):
                return float(row["ssim"])
        raise KeyError((defence.name, batch, steps))

    @property
    def passed(self) -> bool:
        defended = [r for r in self.rows if r["defence"] != NO_DEFENCE.name]
        return bool(defended) and all(r["ssim"] < self.settings.max_ssim for r in defended)

    def to_card(self) -> dict[str, Any]:
        checks = [
            {
                "check": f"SSIM under '{r['defence']}', batch {r['batch_size']}, "
                f"{r['local_steps']} local step(s)",
                "value": r["ssim"],
                "limit": self.settings.max_ssim,
                "passed": r["ssim"] < self.settings.max_ssim,
            }
            for r in self.rows
            if r["defence"] != NO_DEFENCE.name
        ]
        return {
            "kind": "gradient-inversion",
            "threat_model": (
                "Honest-but-curious federated server that sees one client's update (after "
                "its local steps) and the model; it knows the client's learning rate and, "
                "for batches above 1, the labels; with BatchNorm it also knows the batch "
                "statistics."
            ),
            "data": {
                "iterations": self.settings.iterations,
                "trials_per_cell": self.settings.trials,
                "seed": self.settings.seed,
            },
            "tables": {
                "Attack sweep (mean over trials)": self.rows,
                "Utility: FedAvg training under each defence": self.utility,
            },
            "image_pairs": {"True image / reconstruction": self.examples},
            "checks": checks,
            "verdict": "pass" if self.passed else "fail",
            "timings_s": {"total_s": round(self.seconds, 2)},
        }


def fedavg_auc(
    model_factory: ModelFactory,
    train: Records,
    test: Records,
    defence: Defence,
    clients: int = 4,
    rounds: int = 20,
    local_epochs: int = 1,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Test AUC of a model trained by FedAvg where every client update goes through
    ``defence`` (the same numpy code as the Flower mod)."""
    from radguard.vet.models import utility_auc

    torch = require_torch()
    torch.manual_seed(seed)
    model = model_factory()
    rng = np.random.default_rng(seed)
    shards = np.array_split(rng.permutation(len(train)), clients)
    for _ in range(rounds):
        start = [p.detach().clone() for p in model.parameters()]
        updates = []
        for shard in shards:
            local_update(model, train.subset(shard), local_epochs, lr, batch_size, rng)
            update = [
                (s - p.detach()).numpy() for s, p in zip(start, model.parameters(), strict=True)
            ]
            updates.append(defence.apply(update, rng))
            with torch.no_grad():
                for p, s in zip(model.parameters(), start, strict=True):
                    p.copy_(s)
        with torch.no_grad():
            for index, p in enumerate(model.parameters()):
                mean = np.mean([u[index] for u in updates], axis=0)
                p.sub_(torch.from_numpy(mean.astype(np.float32)))
    return utility_auc(model, test)


def local_update(
    model: Any,
    records: Records,
    epochs: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
) -> None:
    """Plain SGD on a client's shard (in place)."""
    torch = require_torch()
    images, targets = records.tensors()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), batch_size):
            index = torch.from_numpy(order[start : start + batch_size])
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images[index]), targets[index]).backward()
            optimizer.step()
    model.eval()


def gradients(
    model_factory: ModelFactory,
    dataset: Records,
    settings: InversionSettings | None = None,
    test: Records | None = None,
    utility_rounds: int = 0,
) -> GradientReport:
    """Sweep batch size, local steps and defences; optionally measure FedAvg utility under
    each defence (``utility_rounds`` > 0 and ``test`` given)."""
    from radguard.vet.card import image_png

    torch = require_torch()
    settings = settings or InversionSettings()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if dataset.is_segmentation:
        raise VetError("the gradient-inversion audit supports classifiers only")
    start = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    rows: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    images, targets = dataset.tensors()
    for defence in settings.defences:
        for batch in settings.batch_sizes:
            for steps in settings.local_steps:
                ssims, psnrs = [], []
                for trial in range(settings.trials):
                    torch.manual_seed(settings.seed + trial)
                    model = model_factory()
                    index = torch.from_numpy(rng.choice(len(images), batch, replace=False))
                    x, y = images[index], targets[index]
                    update, stats = client_update(model, x, y, steps, settings.client_lr)
                    sent = defence.apply(update, np.random.default_rng(settings.seed + trial))
                    labels = torch.tensor([infer_label(model, sent)]) if batch == 1 else y
                    guess = invert(model, sent, tuple(x.shape), labels, steps, settings, stats)
                    ssim, psnr = match_scores(guess, x)
                    ssims.append(ssim)
                    psnrs.append(psnr)
                    if batch == 1 and steps == settings.local_steps[0] and trial == 0:
                        examples.append(
                            {
                                "images": [image_png(x[0].numpy()), image_png(guess[0].numpy())],
                                "caption": f"{defence.name}: SSIM {ssim:.3f}, PSNR {psnr:.1f} dB",
                            }
                        )
                rows.append(
                    {
                        "defence": defence.name,
                        "batch_size": batch,
                        "local_steps": steps,
                        "ssim": float(np.mean(ssims)),
                        "psnr_db": float(np.mean(psnrs)),
                        "trials": settings.trials,
                    }
                )
    utility = []
    if utility_rounds and test is not None:
        for defence in settings.defences:
            utility.append(
                {
                    "defence": defence.name,
                    "test_auc": fedavg_auc(
                        model_factory,
                        dataset,
                        test,
                        defence,
                        rounds=utility_rounds,
                        seed=settings.seed,
                    ),
                }
            )
    return GradientReport(rows, utility, examples, settings, time.perf_counter() - start)
