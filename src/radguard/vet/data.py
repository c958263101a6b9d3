"""The records an audit works on: images, targets, patient keys and subgroup columns.

Kept as plain numpy arrays (picklable, cheap to ship to the processes that train reference
models); :meth:`Records.tensors` turns them into torch tensors where a model needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.errors import RadguardError


class VetError(RadguardError):
    """An audit cannot run: bad inputs, a spec without the callables it needs, a missing extra."""


def require_torch() -> Any:
    """Import torch, or say which extra to install."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - the vet extra is installed in CI
        raise VetError("model vetting needs torch: pip install 'radguard[vet]'") from error
    return torch


@dataclass(frozen=True)
class Records:
    """N records: images (N, C, H, W) float32 in [0, 1], targets, patients, subgroup columns.

    ``targets`` are class indices (N,) for a classifier or masks (N, H, W) for a segmenter.
    ``patients`` groups records: membership is decided per patient, so every image of a
    patient is on the same side of a split. ``groups`` holds columns for subgroup tables
    (sex, age band, site, label...), one value per record.
    """

    images: NDArray[np.float32]
    targets: NDArray[np.int64]
    patients: NDArray[Any]
    groups: Mapping[str, NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4:
            raise VetError(f"images must be (N, C, H, W), got shape {self.images.shape}")
        if len(self.targets) != n or len(self.patients) != n:
            raise VetError(
                f"images ({n}), targets ({len(self.targets)}) and patients "
                f"({len(self.patients)}) differ in length"
            )
        for name, column in self.groups.items():
            if len(column) != n:
                raise VetError(f"subgroup column {name!r} has {len(column)} values for {n} records")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: NDArray[Any]) -> Records:
        """The records at ``index`` (integer positions or a boolean mask)."""
        return Records(
            self.images[index],
            self.targets[index],
            self.patients[index],
            {k: v[index] for k, v in self.groups.items()},
        )

    def patient_keys(self) -> NDArray[Any]:
        """Distinct patients, in first-seen order."""
        _, first = np.unique(self.patients, return_index=True)
        return self.patients[np.sort(first)]

    def tensors(self) -> tuple[Any, Any]:
        """(images, targets) as torch tensors."""
        torch = require_torch()
        return torch.from_numpy(self.images), torch.from_numpy(self.targets)

    @property
    def is_segmentation(self) -> bool:
        return self.targets.ndim == 3


def from_arrays(
    images: NDArray[Any],
    targets: NDArray[Any],
    patients: NDArray[Any] | None = None,
    groups: Mapping[str, NDArray[Any]] | None = None,
) -> Records:
    """Records from uint8 or float images ((N, H, W) or (N, C, H, W)); one patient per image
    unless ``patients`` says otherwise."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[:, None]
    data = array.astype(np.float32)
    if array.dtype == np.uint8:
        data /= 255.0
    labels = np.asarray(targets).astype(np.int64)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    keys = np.arange(len(data)) if patients is None else np.asarray(patients)
    return Records(data, labels, keys, dict(groups or {}))


def group_patients(count: int, per_patient: int, seed: int) -> NDArray[np.int64]:
    """Synthetic patient keys: ``count`` records dealt at random into patients of
    ``per_patient`` images (for datasets such as PneumoniaMNIST that carry no patient IDs)."""
    order = np.random.default_rng(seed).permutation(count)
    keys = np.empty(count, dtype=np.int64)
    keys[order] = np.arange(count) // max(1, per_patient)
    return keys


def load_npz(
    path: Path | str, split: str = "train", limit: int | None = None, seed: int = 0
) -> Records:
    """Records from a MedMNIST-style ``.npz`` (``<split>_images``, ``<split>_labels``).

    ``limit`` takes a seeded random sample (such files are often sorted by label). The label
    becomes a subgroup column too, so subgroup tables show each class.
    """
    with np.load(path) as data:
        key = f"{split}_images"
        if key not in data:
            raise VetError(f"{path}: no array {key!r} (has {', '.join(data.files)})")
        images = data[key]
        labels = np.asarray(data[f"{split}_labels"]).reshape(len(images), -1)[:, 0]
    if limit is not None and limit < len(images):
        pick = np.random.default_rng(seed).permutation(len(images))[:limit]
        images, labels = images[pick], labels[pick]
    return from_arrays(images, labels, groups={"label": labels.astype(str)})


def split_patients(
    records: Records, fraction: float, seed: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """A patient-level random split: masks (chosen, rest) with ``fraction`` of patients chosen."""
    keys = records.patient_keys()
    rng = np.random.default_rng(seed)
    chosen_keys = rng.permutation(keys)[: round(fraction * len(keys))]
    chosen = np.isin(records.patients, chosen_keys)
    return chosen, ~chosen
