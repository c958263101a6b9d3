"""The head frame: the volume's axes turned (by whole right angles) to right, front, top.

Defacing works on a view of the stored array whose axes point to the patient's right (0),
anterior (1) and superior (2). The header's geometry gives a first guess (the closest RAS
axes); when the face is not found that way, the image decides: every one of the 24 ways to
point the axes is tried against the face detector (wrong or missing headers are common in
NIfTI files). A frame is a permutation with signs, so going back is exact: no resampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations, product
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

A = TypeVar("A", bound="np.ndarray[Any, Any]")


@dataclass(frozen=True)
class Frame:
    """``axes[h]`` is the stored axis that head axis ``h`` runs along; ``flips[h]`` whether
    it runs backwards."""

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def view(self, array: A) -> A:
        """The stored array seen in the head frame (a view, no copy)."""
        out = np.transpose(array, self.axes)
        for h, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=h)
        return cast(A, out)

    def unview(self, array: A) -> A:
        """A head-frame array back in stored order (inverse of :meth:`view`)."""
        out = array
        for h, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=h)
        return cast(A, np.transpose(out, np.argsort(self.axes)))

    def spacing(self, stored: tuple[float, float, float]) -> tuple[float, float, float]:
        a, b, c = self.axes
        return stored[a], stored[b], stored[c]

    def matrix(self) -> NDArray[np.float64]:
        """Column h: the stored-axis direction of head axis h (signed unit vector)."""
        m = np.zeros((3, 3))
        for h, (axis, flip) in enumerate(zip(self.axes, self.flips, strict=True)):
            m[axis, h] = -1.0 if flip else 1.0
        return m

    @property
    def proper(self) -> bool:
        return bool(np.linalg.det(self.matrix()) > 0)


def from_affine(affine: NDArray[np.float64]) -> Frame:
    """The frame the header says: each RAS direction matched to its closest stored axis."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    best: Frame | None = None
    best_score = -np.inf
    for axes in permutations(range(3)):
        for flips in product((False, True), repeat=3):
            score = sum(
                (-1.0 if flips[h] else 1.0) * directions[h, axes[h]] for h in range(3)
            )  # RAS axis h against stored axis axes[h]
            if score > best_score:
                best, best_score = Frame(axes, flips), score  # type: ignore[arg-type]
    assert best is not None
    return best


def all_frames() -> list[Frame]:
    """The 24 proper (not mirrored) ways to point the three axes."""
    frames = []
    for axes in permutations(range(3)):
        for flips in product((False, True), repeat=3):
            frame = Frame(axes, flips)  # type: ignore[arg-type]
            if frame.proper:
                frames.append(frame)
    return frames


def compose(base: Frame, turn: Frame) -> Frame:
    """``turn`` applied to the head-frame view of ``base`` as one frame on the stored array."""
    m = base.matrix() @ turn.matrix()
    axes = tuple(int(np.argmax(np.abs(m[:, h]))) for h in range(3))
    flips = tuple(bool(m[axes[h], h] < 0) for h in range(3))
    return Frame(axes, flips)  # type: ignore[arg-type]
