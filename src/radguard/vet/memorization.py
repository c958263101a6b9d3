"""Memorization of training images by a generative model: near-copies among its outputs.

For each synthetic image, the nearest training images under each embedding, scored by how
much closer the nearest one is than the next four (1 - d1 / mean(d2..d5)); the threshold
for "near-copy" is calibrated on real-vs-real pairs (each held-out real image against the
training set: how close an unseen real image naturally comes), at a false-flag rate of
``fpr`` split evenly across the embeddings, so a generator that only draws fresh real-looking
images is flagged about ``fpr`` of the time.

Embeddings (pluggable; any ``callable(images) -> (N, D)`` works too):
- pixel: standardized, lightly blurred pixels; cosine = Pearson correlation.
- ssim: structural similarity (Gaussian window) of the blurred images, on the 16 nearest
  pixel candidates.
- encoder: a small CNN trained here, self-supervised (SimCLR-style contrastive loss with
  noise, shift and contrast augmentations), on the user's own real images. No downloads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.vet.data import VetError, require_torch

EmbedFn = Callable[[NDArray[np.float32]], NDArray[np.float32]]


class Embedding(Enum):
    """Built-in similarity measures."""

    PIXEL = "pixel"
    SSIM = "ssim"
    ENCODER = "encoder"


@dataclass(frozen=True)
class MemorizationSettings:
    """``fpr``: share of held-out real images allowed to be flagged (calibration quantile)."""

    embeddings: tuple[Embedding, ...] = (Embedding.PIXEL, Embedding.SSIM, Embedding.ENCODER)
    fpr: float = 0.01
    max_near_copy_share: float = 0.05
    encoder_epochs: int = 6
    encoder_dim: int = 64
    ssim_candidates: int = 16
    seed: int = 0
    threads: int = 0
    pairs_shown: int = 8
    duplicate_similarity: float = 0.999
    custom: dict[str, EmbedFn] = field(default_factory=dict)


def _blur(images: Any) -> Any:
    """Gaussian blur (sigma 1 pixel, 5x5, edges replicated): removes pixel noise that would
    otherwise hide a copy, keeps the anatomy that makes two images the same person's."""
    torch = require_torch()
    x = torch.arange(5, dtype=torch.float32) - 2
    kernel = torch.exp(-(x**2) / 2)
    kernel = kernel / kernel.sum()
    k2 = (kernel[:, None] * kernel[None, :])[None, None].repeat(images.shape[1], 1, 1, 1)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    return torch.nn.functional.conv2d(padded, k2, groups=images.shape[1])


def pixel_embedding(images: NDArray[np.float32]) -> NDArray[np.float32]:
    """Blurred, zero-mean, unit-norm pixels: the dot product is Pearson correlation."""
    torch = require_torch()
    flat = _blur(torch.from_numpy(images)).flatten(1)
    flat = flat - flat.mean(1, keepdim=True)
    return np.asarray((flat / (flat.norm(dim=1, keepdim=True) + 1e-8)).numpy(), np.float32)


def ssim_pairs(a: Any, b: Any) -> Any:
    """SSIM between matching images of two (N, C, H, W) tensors in [0, 1] (7x7 Gaussian)."""
    torch = require_torch()
    x = torch.arange(7, dtype=torch.float32) - 3
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :])[None, None].repeat(a.shape[1], 1, 1, 1)

    def filt(t: Any) -> Any:
        return torch.nn.functional.conv2d(t, window, groups=a.shape[1])

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return value.flatten(1).mean(1)


def _augment(batch: Any, generator: Any) -> Any:
    torch = require_torch()
    from radguard.vet.models import shift

    out = shift(batch, generator, 2)
    scale = 1 + 0.2 * (torch.rand((len(out), 1, 1, 1), generator=generator) - 0.5)
    offset = 0.1 * (torch.rand((len(out), 1, 1, 1), generator=generator) - 0.5)
    sigma = 0.12 * torch.rand((len(out), 1, 1, 1), generator=generator)
    noise = torch.randn(out.shape, generator=generator) * sigma
    return (out * scale + offset + noise).clamp(0, 1)


def train_encoder(
    images: NDArray[np.float32], epochs: int = 10, dim: int = 64, seed: int = 0
) -> EmbedFn:
    """A self-supervised encoder (SimCLR-style NT-Xent) trained on ``images``; returns an
    embedding function giving unit vectors."""
    torch = require_torch()
    nn = torch.nn
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    channels = images.shape[1]
    net = nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.GroupNorm(4, 32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, 128),
        nn.ReLU(),
        nn.Linear(128, dim),
    )
    data = torch.from_numpy(images)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    temperature = 0.2
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order) - 1, 256):
            batch = data[order[start : start + 256]]
            if len(batch) < 2:
                continue
            z = nn.functional.normalize(
                net(torch.cat([_augment(batch, generator), _augment(batch, generator)])), dim=1
            )
            logits = z @ z.T / temperature
            logits.fill_diagonal_(float("-inf"))
            n = len(batch)
            labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
            loss = nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()

    def embed(batch_images: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.no_grad():
            out = [
                nn.functional.normalize(net(torch.from_numpy(batch_images[i : i + 1024])), dim=1)
                for i in range(0, len(batch_images), 1024)
            ]
        return np.asarray(torch.cat(out).numpy(), np.float32)

    return embed


def _relative(distances: NDArray[np.float64]) -> NDArray[np.float64]:
    """1 - d1 / mean(d2..d5) per row of sorted distances: near 1 for a copy (its source is
    much closer than the next images), near 0 for an unseen image. Pixel noise added to a
    copy raises every distance alike, so the ratio survives it where the raw similarity
    does not."""
    d = np.maximum(distances, 1e-9)
    return np.asarray(1 - d[:, 0] / d[:, 1:5].mean(axis=1), dtype=np.float64)


def _nearest(
    query: NDArray[np.float32], reference: NDArray[np.float32]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """(relative score, index of the nearest reference row, its cosine similarity)."""
    scores = np.zeros(len(query))
    index = np.zeros(len(query), dtype=np.int64)
    similarity = np.zeros(len(query))
    for start in range(0, len(query), 1024):
        sims = query[start : start + 1024] @ reference.T
        top = np.argsort(-sims, axis=1)[:, :5]
        rows = np.arange(len(sims))[:, None]
        scores[start : start + len(sims)] = _relative(1 - sims[rows, top].astype(np.float64))
        index[start : start + len(sims)] = top[:, 0]
        similarity[start : start + len(sims)] = sims[rows[:, 0], top[:, 0]]
    return scores, index, similarity


def _ssim_nearest(
    query: NDArray[np.float32], reference: NDArray[np.float32], candidates: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Relative SSIM score among each query's ``candidates`` nearest pixel neighbours."""
    torch = require_torch()
    q_emb, r_emb = pixel_embedding(query), pixel_embedding(reference)
    scores = np.zeros(len(query))
    best = np.zeros(len(query))
    index = np.zeros(len(query), dtype=np.int64)
    ref = _blur(torch.from_numpy(reference))
    for start in range(0, len(query), 256):
        sims = q_emb[start : start + 256] @ r_emb.T
        top = np.argsort(-sims, axis=1)[:, :candidates]
        q = _blur(torch.from_numpy(query[start : start + 256]))
        n = len(q)
        values = (
            ssim_pairs(q.repeat_interleave(top.shape[1], 0), ref[torch.from_numpy(top.reshape(-1))])
            .reshape(n, -1)
            .numpy()
            .astype(np.float64)
        )
        order = np.argsort(-values, axis=1)
        ranked = np.take_along_axis(values, order, axis=1)
        scores[start : start + n] = _relative(1 - ranked)
        best[start : start + n] = ranked[:, 0]
        index[start : start + n] = top[np.arange(n), order[:, 0]]
    return scores, index, best


@dataclass
class MemorizationReport:
    """Per-embedding thresholds and flags, near-copy shares, DCR scores, closest pairs."""

    settings: MemorizationSettings
    thresholds: dict[str, float]
    synthetic_similarity: dict[str, NDArray[np.float64]]
    holdout_similarity: dict[str, NDArray[np.float64]]
    nearest_train: dict[str, NDArray[np.int64]]
    flagged: NDArray[np.bool_]
    patients_copied: float
    dcr_closer_to_train: float
    dcr_closer_to_train_ci: tuple[float, float]
    pairs: list[dict[str, Any]]
    counts: dict[str, int]
    seconds: float

    @property
    def near_copy_share(self) -> float:
        return float(self.flagged.mean()) if len(self.flagged) else 0.0

    @property
    def passed(self) -> bool:
        return self.near_copy_share <= self.settings.max_near_copy_share

    def to_card(self) -> dict[str, Any]:
        per = {
            name: float(np.mean(sim > self.thresholds[name]))
            for name, sim in self.synthetic_similarity.items()
        }
        return {
            "kind": "memorization",
            "threat_model": (
                "Anyone who receives the synthetic images and compares them with the training "
                "scans: a synthetic image as close to a training image as no unseen real image "
                "comes is a near-copy that can reveal the patient."
            ),
            "data": {
                **self.counts,
                "calibration": (
                    f"real-vs-real: held-out real images against the training set, "
                    f"quantile {1 - self.settings.fpr / max(1, len(self.thresholds)):.4f} "
                    "per embedding"
                ),
            },
            "metrics": {
                "near_copy_share": self.near_copy_share,
                "near_copy_share_by_embedding": per,
                "training_patients_copied_share": self.patients_copied,
                "dcr_share_closer_to_train_than_holdout": self.dcr_closer_to_train,
                "dcr_share_ci95": list(self.dcr_closer_to_train_ci),
                "thresholds": self.thresholds,
            },
            "shares": {
                "near-copies (any embedding)": self.near_copy_share,
                **{f"near-copies ({k})": v for k, v in per.items()},
                "training patients copied": self.patients_copied,
                "closer to train than holdout (DCR)": self.dcr_closer_to_train,
            },
            "checks": [
                {
                    "check": "share of synthetic images that are near-copies",
                    "value": self.near_copy_share,
                    "limit": self.settings.max_near_copy_share,
                    "passed": self.passed,
                }
            ],
            "verdict": "pass" if self.passed else "fail",
            "image_pairs": {"Closest synthetic / training pairs": self.pairs},
            "per_image": {
                "flagged": self.flagged.astype(int).tolist(),
                **{f"similarity_{k}": v.tolist() for k, v in self.synthetic_similarity.items()},
            },
            "timings_s": {"total_s": round(self.seconds, 2)},
        }


def memorization(
    synthetic: NDArray[Any],
    train: NDArray[Any],
    holdout: NDArray[Any],
    train_patients: NDArray[Any] | None = None,
    settings: MemorizationSettings | None = None,
) -> MemorizationReport:
    """Find near-copies of ``train`` among ``synthetic`` images, calibrated on ``holdout``.

    Images are (N, H, W) or (N, C, H, W), uint8 or float in [0, 1], all the same shape.
    """
    from radguard.vet.card import image_png
    from radguard.vet.data import from_arrays
    from radguard.vet.stats import clopper_pearson

    settings = settings or MemorizationSettings()
    torch = require_torch()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    syn = from_arrays(synthetic, np.zeros(len(synthetic))).images
    real = from_arrays(train, np.zeros(len(train))).images
    held = from_arrays(holdout, np.zeros(len(holdout))).images
    if syn.shape[1:] != real.shape[1:] or held.shape[1:] != real.shape[1:]:
        raise VetError(f"image shapes differ: {syn.shape[1:]}, {real.shape[1:]}, {held.shape[1:]}")
    if len(held) < 20:
        raise VetError("calibration needs at least 20 held-out real images")
    patients = np.arange(len(real)) if train_patients is None else np.asarray(train_patients)
    embedders: dict[str, EmbedFn] = {}
    for kind in settings.embeddings:
        if kind is Embedding.PIXEL:
            embedders["pixel"] = pixel_embedding
        elif kind is Embedding.ENCODER:
            embedders["encoder"] = train_encoder(
                np.concatenate([real, held]),
                settings.encoder_epochs,
                settings.encoder_dim,
                settings.seed,
            )
    embedders.update(settings.custom)
    names = [*embedders, *(["ssim"] if Embedding.SSIM in settings.embeddings else [])]
    quantile = 1 - settings.fpr / max(1, len(names))
    thresholds: dict[str, float] = {}
    syn_sim: dict[str, NDArray[np.float64]] = {}
    held_sim: dict[str, NDArray[np.float64]] = {}
    nearest: dict[str, NDArray[np.int64]] = {}
    distance_train = np.zeros(len(syn))
    distance_held = np.zeros(len(syn))
    for name, embed in embedders.items():
        e_real, e_held, e_syn = embed(real), embed(held), embed(syn)
        held_sim[name] = _nearest(e_held, e_real)[0]
        syn_sim[name], nearest[name], raw = _nearest(e_syn, e_real)
        if name == names[0]:
            distance_train = 1 - raw
            distance_held = 1 - _nearest(e_syn, e_held)[2]
    if "ssim" in names:
        held_sim["ssim"] = _ssim_nearest(held, real, settings.ssim_candidates)[0]
        syn_sim["ssim"], nearest["ssim"], _ = _ssim_nearest(syn, real, settings.ssim_candidates)
    # Real data holds duplicates (the same radiograph filed twice): a held-out image that is
    # the training image itself is a leak in the split, not a natural neighbour, and would
    # drag the threshold to 1. Such pairs are counted and left out of the calibration.
    e_pixel = pixel_embedding(real)
    duplicate = _nearest(pixel_embedding(held), e_pixel)[2] >= settings.duplicate_similarity
    if duplicate.all():
        raise VetError("every held-out image duplicates a training image: no calibration")
    for name in names:
        thresholds[name] = float(np.quantile(held_sim[name][~duplicate], quantile))
    flags = np.zeros(len(syn), dtype=bool)
    for name in names:
        flags |= syn_sim[name] > thresholds[name]
    copied: set[Any] = set()
    for name in names:
        hit = syn_sim[name] > thresholds[name]
        copied.update(patients[nearest[name][hit]].tolist())
    # DCR: is a synthetic image closer to the training set than to a held-out set of equal
    # size? About half for a generator that learned the distribution, more if it copies.
    rng = np.random.default_rng(settings.seed)
    if len(held) < len(real):
        sample = rng.choice(len(real), len(held), replace=False)
        e0 = embedders.get(names[0], pixel_embedding)
        distance_train = 1 - _nearest(e0(syn), e0(real[sample]))[2]
        distance_held = 1 - _nearest(e0(syn), e0(held))[2]
    closer = int(np.sum(distance_train < distance_held))
    low, high = clopper_pearson(closer, len(syn))
    first = names[0]
    order = np.argsort(-(syn_sim[first] - thresholds[first]))[: settings.pairs_shown]
    pairs = [
        {
            "images": [image_png(syn[i]), image_png(real[nearest[first][i]])],
            "caption": (
                f"synthetic #{i} / training #{nearest[first][i]}: {first} relative score "
                f"{syn_sim[first][i]:.3f} (threshold {thresholds[first]:.3f})"
            ),
        }
        for i in order
    ]
    return MemorizationReport(
        settings=settings,
        thresholds=thresholds,
        synthetic_similarity=syn_sim,
        holdout_similarity=held_sim,
        nearest_train=nearest,
        flagged=flags,
        patients_copied=len(copied) / max(1, len(np.unique(patients))),
        dcr_closer_to_train=closer / max(1, len(syn)),
        dcr_closer_to_train_ci=(low, high),
        pairs=pairs,
        counts={
            "synthetic": len(syn),
            "training": len(real),
            "training_patients": len(np.unique(patients)),
            "holdout": len(held),
            "holdout_duplicating_training": int(duplicate.sum()),
        },
        seconds=time.perf_counter() - start,
    )
