"""A small reference CNN and a picklable training recipe, for audits, tests and benchmarks.

Users bring their own ``model_factory`` and ``train_fn``; these are what radguard's own
figures are measured with, and a sensible default for a quick audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.vet.data import Records, require_torch


def small_cnn(
    in_channels: int = 1, classes: int = 2, width: int = 16, norm: str = "group", size: int = 28
) -> Any:
    """Two conv blocks and a two-layer head; ``norm`` is "group", "batch" or "none".

    GroupNorm keeps it Opacus-compatible as is; "batch" is for the BatchNorm prior of the
    gradient-inversion attack.
    """
    torch = require_torch()
    nn = torch.nn

    def block(cin: int, cout: int) -> list[Any]:
        layers: list[Any] = [nn.Conv2d(cin, cout, 3, padding=1)]
        if norm == "group":
            layers.append(nn.GroupNorm(min(4, cout), cout))
        elif norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        return layers

    flat = 2 * width * (size // 4) * (size // 4)
    return nn.Sequential(
        *block(in_channels, width),
        *block(width, 2 * width),
        nn.Flatten(),
        nn.Linear(flat, 64),
        nn.ReLU(),
        nn.Linear(64, classes),
    )


@dataclass(frozen=True)
class ModelFactory:
    """A picklable ``model_factory`` for :func:`small_cnn`."""

    in_channels: int = 1
    classes: int = 2
    width: int = 16
    norm: str = "group"
    size: int = 28

    def __call__(self) -> Any:
        return small_cnn(self.in_channels, self.classes, self.width, self.norm, self.size)


@dataclass(frozen=True)
class Recipe:
    """A picklable ``train_fn(model, records, seed) -> model``: Adam, cross-entropy.

    ``epochs`` high and ``weight_decay`` 0 overfit (the leaky configuration the audit must
    catch); ``augment`` adds random shifts of up to 2 pixels; ``device`` "cuda" trains on a
    GPU (the model comes back on the CPU).
    """

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    augment: bool = False
    threads: int = 0
    device: str = "cpu"

    def __call__(self, model: Any, records: Records, seed: int) -> Any:
        torch = require_torch()
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        images, targets = records.tensors()
        images, targets = images.to(self.device), targets.to(self.device)
        model = model.to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(images), generator=generator).to(self.device)
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                batch = images[index]
                if self.augment:
                    batch = shift(batch, generator)
                optimizer.zero_grad()
                loss_fn(model(batch), targets[index]).backward()
                optimizer.step()
        model.eval()
        return model.cpu()  # scoring runs on the CPU, in the process that trained it


def shift(batch: Any, generator: Any, pixels: int = 2) -> Any:
    """Random translation of the whole batch by up to ``pixels`` (zero padded)."""
    torch = require_torch()
    dx, dy = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator))
    padded = torch.nn.functional.pad(batch, (pixels, pixels, pixels, pixels))
    h, w = batch.shape[-2:]
    return padded[..., pixels + dy : pixels + dy + h, pixels + dx : pixels + dx + w]


def predict_logits(model: Any, records: Records, batch_size: int = 512) -> Any:
    """Logits of every record (eval mode, no gradients)."""
    torch = require_torch()
    images, _ = records.tensors()
    model.eval()
    with torch.no_grad():
        return torch.cat(
            [model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )


def confidence_logit(model: Any, records: Records) -> NDArray[np.float64]:
    """phi = log Pr(y|x) - log(1 - Pr(y|x)) per record, computed without saturating.

    For a classifier phi is the true-class logit minus the log-sum-exp of the others; for a
    segmenter Pr(y|x) is exp(-mean pixel cross-entropy). Every membership attack here starts
    from phi: float64 probabilities of an overfit model round to exactly 1, phi does not.
    """
    torch = require_torch()
    logits = predict_logits(model, records).double()
    targets = torch.from_numpy(records.targets)
    if records.is_segmentation:
        loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        log_p = -loss.mean(dim=(1, 2)).numpy()
        return np.asarray(log_p - np.log(-np.expm1(np.minimum(log_p, -1e-300))), np.float64)
    true = logits.gather(1, targets[:, None])[:, 0]
    others = logits.scatter(1, targets[:, None], float("-inf"))
    return np.asarray((true - torch.logsumexp(others, dim=1)).numpy(), dtype=np.float64)


def log_p(phi: NDArray[np.float64]) -> NDArray[np.float64]:
    """log Pr(y|x) from phi, exact near 0."""
    return np.asarray(-np.logaddexp(0.0, -phi), dtype=np.float64)


def log_q(phi: NDArray[np.float64]) -> NDArray[np.float64]:
    """log(1 - Pr(y|x)) from phi, exact near 0."""
    return np.asarray(-np.logaddexp(0.0, phi), dtype=np.float64)


def utility_auc(model: Any, records: Records) -> float:
    """ROC AUC of a binary classifier on ``records`` (the utility figure next to privacy)."""
    from radguard.vet.stats import auc

    torch = require_torch()
    logits = predict_logits(model, records)
    positive = torch.softmax(logits.double(), dim=1)[:, 1].numpy()
    return auc(positive, records.targets == 1)
