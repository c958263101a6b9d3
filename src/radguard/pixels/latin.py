"""radguard's own line recognizer for burned-in overlays (Latin letters, digits, symbols).

A small CRNN (about 0.8 M parameters, 3.3 MB of ONNX) trained here by
``scripts/train_recognizer.py`` on synthetic overlay text: the fonts devices draw with,
cap heights from 5 to 44 px, faint to full contrast over speckle, grey and coloured ink, seen
through the same views the pixel stage reads (the fused view and the frame as shown). It reads
one detected line per crop, 32 px high, grey, and runs on ONNX Runtime's CPU provider.

It replaces PP-OCR's recognizer for the Latin text of overlays: on the pixel bench's small
labels it reads more characters right, in less time (figures in docs/benchmarks.md). The
PP-OCR models still find the lines (detection) and give the second reading of lines in doubt.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from radguard.pixels.engines import EngineUnavailable, Image, ctc_greedy, onnx_session

if TYPE_CHECKING:
    import onnxruntime

MODEL = "latin-rec.onnx"
_MAX_WIDTH = 800  # widest input (pixels): the model was trained on crops up to this width
_MAX_BATCH = 16
_FLOOR = 0.05  # alternatives at least this probable (relative to the best) are reported


def model_bytes() -> bytes:
    """The packaged model (a broken install without it is named, not a bare traceback)."""
    path = resources.files("radguard.pixels").joinpath("models", MODEL)
    try:
        return path.read_bytes()
    except OSError as error:
        raise EngineUnavailable(
            f"radguard's recognizer model {MODEL} is missing from the installed package "
            f"({error.strerror or error}): reinstall radguard, or set pixels.reader = 'ppocr'"
        ) from error


class LatinRecognizer:
    """Reads text-line crops with the packaged model (create once, reuse)."""

    def __init__(self, threads: int = 1) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise EngineUnavailable(
                "radguard's recognizer needs onnxruntime: pip install 'radguard[pixels]'"
            ) from error
        self._session: onnxruntime.InferenceSession = onnx_session(model_bytes(), threads)
        meta = self._session.get_modelmeta().custom_metadata_map
        self.charset: list[str] = ["", *json.loads(meta["charset"])]
        self.height = int(meta["height"])
        self.stride = int(meta["stride"])
        self._input = self._session.get_inputs()[0].name

    def input_of(self, crop: Image) -> NDArray[np.uint8]:
        """A crop as the model reads it: brightest channel, 32 px high, width in proportion."""
        import cv2

        grey = crop if crop.ndim == 2 else crop.max(axis=2)
        rows, cols = grey.shape[:2]
        width = math.ceil(self.height * cols / max(rows, 1))
        width = min(_MAX_WIDTH, max(self.stride * 2, width))
        shrink = rows > self.height
        method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out: NDArray[np.uint8] = np.asarray(
            cv2.resize(np.ascontiguousarray(grey), (width, self.height), interpolation=method),
            np.uint8,
        )
        return out

    def read_crops(self, crops: list[Image]) -> list[tuple[str, float]]:
        """Text and confidence (mean probability of the characters read) of each crop."""
        return [
            self.decode(probs) if probs is not None else ("", 0.0) for probs in self.probs(crops)
        ]

    def alternatives(
        self,
        crops: list[Image],
        readings: list[tuple[str, float]],
        floor: float = _FLOOR,
        probs: list[NDArray[np.float32] | None] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Other likely readings of each crop (its CTC beam search) besides ``readings`` (the
        text and confidence kept for it), each scored as that confidence times its probability
        relative to the most probable reading: an alternative is never surer than the
        reading it is an alternative of. Those under ``floor`` of the best are left out.
        ``probs``: the crops' class probabilities where already computed (:meth:`probs`)."""
        found: list[list[tuple[str, float]]] = []
        computed = self.probs(crops) if probs is None else probs
        for probs_of, (text, score) in zip(computed, readings, strict=True):
            if probs_of is None:
                found.append([])
                continue
            ranked = beams(probs_of, self.charset)
            top = ranked[0][1] if ranked and ranked[0][1] > 0 else 1.0
            found.append(
                [(alt, score * p / top) for alt, p in ranked if alt != text and p / top >= floor]
            )
        return found

    def probs(self, crops: list[Image]) -> list[NDArray[np.float32] | None]:
        """The model's class probabilities per step for each crop (None: nothing to read)."""
        results: list[NDArray[np.float32] | None] = [None] * len(crops)
        inputs = [
            (k, self.input_of(crop))
            for k, crop in enumerate(crops)
            if crop.size and min(crop.shape[:2]) >= 2
        ]
        inputs.sort(key=lambda item: item[1].shape[1])
        start = 0
        while start < len(inputs):
            # a batch of crops of about one width (padding by the right edge's column)
            end = start + 1
            first = inputs[start][1].shape[1]
            while (
                end < len(inputs)
                and end - start < _MAX_BATCH
                and inputs[end][1].shape[1] <= first * 1.25 + self.stride
            ):
                end += 1
            batch = inputs[start:end]
            width = -(-batch[-1][1].shape[1] // self.stride) * self.stride
            tensor = np.empty((len(batch), 1, self.height, width), np.uint8)
            for row, (_, image) in enumerate(batch):
                used = image.shape[1]
                tensor[row, 0, :, :used] = image
                tensor[row, 0, :, used:] = image[:, -1:]
            probs = self._session.run(None, {self._input: tensor})[0]
            for row, (index, _) in enumerate(batch):
                results[index] = probs[row]  # padded as in training
            start = end
        return results

    def decode(self, probs: NDArray[np.float32]) -> tuple[str, float]:
        """CTC greedy decoding of one crop's probabilities."""
        return ctc_greedy(probs, self.charset)


def beams(
    probs: NDArray[np.float32], charset: list[str], width: int = 8
) -> list[tuple[str, float]]:
    """The ``width`` most probable readings of one line (CTC prefix beam search over the
    characters with probability >= 1% at each step), with their probabilities (sum over the
    alignments that give them), most probable first."""
    # per prefix: (probability ending in blank, probability ending in its last character)
    table: dict[tuple[int, ...], tuple[float, float]] = {(): (1.0, 0.0)}
    for step in probs:
        candidates = np.flatnonzero(step >= 0.01)
        following: dict[tuple[int, ...], list[float]] = {}
        for prefix, (blank, char) in table.items():
            total = blank + char
            for c in candidates:
                p = float(step[c])
                if c == 0:
                    entry = following.setdefault(prefix, [0.0, 0.0])
                    entry[0] += total * p
                    continue
                extended = (*prefix, int(c))
                entry = following.setdefault(extended, [0.0, 0.0])
                if prefix and prefix[-1] == c:
                    entry[1] += blank * p  # a repeat needs a blank between
                    same = following.setdefault(prefix, [0.0, 0.0])
                    same[1] += char * p  # the same character held
                else:
                    entry[1] += total * p
        live = [kv for kv in following.items() if kv[1][0] + kv[1][1] > 0.0]
        best = sorted(live, key=lambda kv: -(kv[1][0] + kv[1][1]))[:width]
        norm = sum(b + c for _, (b, c) in best) or 1.0
        table = {prefix: (b / norm, c / norm) for prefix, (b, c) in best}
    ranked = sorted(table.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    return [("".join(charset[i] for i in prefix), b + c) for prefix, (b, c) in ranked]
