"""A lean ONNX Runtime runner for the PP-OCRv6 models that the rapidocr wheel ships.

Same models as :class:`radguard.pixels.engines.RapidOcrEngine`, without RapidOCR's wrapper:

- detection pads the image to multiples of 32 (never stretches it: the caller upscales small
  text on purpose), thresholds the model's probability map and turns its connected components
  into axis-aligned boxes, grown by the DB "unclip" distance (area x ratio / perimeter) so the
  boxes cover the ink (burned-in overlays are horizontal text);
- recognition crops each box, resizes it to the model's height (48 px) keeping its aspect
  ratio, and never pads it (RapidOCR pads every crop to at least 320 px, and to the widest of
  its batch: slower, and padding changes what the model reads), then decodes CTC greedily;
- the recognition head is pruned at load time: the final classifier (18,710 classes, Chinese and
  Latin) keeps the CTC blank and the Latin characters only (ASCII, Latin-1 and Latin
  Extended-A letters, a few unit symbols). The pruned model is built in memory from the wheel's
  model and never written to disk.

Channels: the models were trained on OpenCV's BGR order, so RGB input is flipped first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from radguard.pixels.engines import (
    Box,
    EngineName,
    EngineUnavailable,
    Image,
    Line,
    _rapidocr_models,
    ctc_greedy,
    onnx_session,
)

if TYPE_CHECKING:
    import onnx
    import onnxruntime

    from radguard.pixels.latin import LatinRecognizer

# Symbols of measurement overlays beyond ASCII and Latin letters.
UNIT_SYMBOLS = "°µ±×²³·"
_REC_HEIGHT = 48  # the recognition model's fixed input height
_DET_ALIGN = 32  # the detection network needs sides that are multiples of this
# (x / 255 - 0.5) / 0.5 for every 8-bit value: the normalisation of both models
_NORMALISE = ((np.arange(256, dtype=np.float32) / 255.0) - 0.5) / 0.5


def latin_charset() -> frozenset[str]:
    """Characters the pruned recognizer may emit: ASCII printable, Latin letters, symbols."""
    ascii_printable = {chr(c) for c in range(0x20, 0x7F)}
    latin = {chr(c) for c in range(0xC0, 0x180) if chr(c).isalpha()}
    return frozenset(ascii_printable | latin | set(UNIT_SYMBOLS))


@dataclass(frozen=True)
class DetSettings:
    """Detection post-processing (RapidOCR's defaults for these models)."""

    thresh: float = 0.3  # probability that marks a pixel as text
    box_thresh: float = 0.5  # minimum mean probability inside a box
    unclip_ratio: float = 1.6  # DB expansion: distance = area x ratio / perimeter
    min_side: int = 3  # boxes thinner than this (before growing) are noise


@dataclass(frozen=True)
class RecSettings:
    """Recognition input and batching.

    Padding changes what the model reads (its attention sees the padded columns): on the
    bench's ground-truth crops, padding each crop by 16 columns cost 2 points of exact
    matches, and RapidOCR's padding to 320 columns 3 points. So crops are batched only with
    crops of the same input width by default. With one thread a batch saves little anyway
    (5-10% for short crops); wide inputs run faster alone."""

    # crops are resized to this height; the model was trained at 48, and other heights (the
    # input is then declared dynamic) read worse: 40 px 0.092, 32 px 0.108 mean edit
    # distance on the bench's crops against 0.075, for 30-55% less time
    height: int = _REC_HEIGHT
    min_width: int = 16  # narrowest input (pixels)
    batch_below: int = 160  # inputs at least this wide run alone
    max_batch: int = 8
    max_padding: float = 0.0  # share of a batch's input that may be padding


def _session(model: str | bytes, threads: int) -> onnxruntime.InferenceSession:
    session: onnxruntime.InferenceSession = onnx_session(model, threads)
    return session


def _producer(model: onnx.ModelProto, name: str) -> Any:
    for node in model.graph.node:
        if name in node.output:
            return node
    raise EngineUnavailable(f"recognition model: nothing produces {name!r}")


def _classes(model: onnx.ModelProto) -> list[str]:
    """Class index -> character: CTC blank (""), the model's dictionary, then a space."""
    table = {p.key: p.value for p in model.metadata_props}.get("character")
    if table is None:
        raise EngineUnavailable("the recognition model carries no character table")
    return ["", *table.splitlines(), " "]


def prune_classifier(model: onnx.ModelProto, keep: list[int]) -> onnx.ModelProto:
    """``model`` with its final classifier (MatMul + Add before the output Softmax) cut down
    to the classes ``keep`` (in that order); the model is changed in place and returned."""
    from onnx import numpy_helper

    output = model.graph.output[0]
    softmax = _producer(model, output.name)
    if softmax.op_type != "Softmax":
        raise EngineUnavailable("recognition model: the output is not a Softmax")
    node = _producer(model, softmax.input[0])
    while node.op_type == "Identity":
        node = _producer(model, node.input[0])
    weights = {init.name: init for init in model.graph.initializer}
    bias_name = None
    if node.op_type == "Add":
        bias_name = next((i for i in node.input if i in weights), None)
        source = next(i for i in node.input if i != bias_name)
        node = _producer(model, source)
        while node.op_type == "Identity":
            node = _producer(model, node.input[0])
    if node.op_type == "Gemm":
        if len(node.input) > 2:
            bias_name = node.input[2]
        transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
    elif node.op_type == "MatMul":
        transposed = False
    else:
        raise EngineUnavailable(f"recognition model: unexpected classifier {node.op_type}")
    weight_name = node.input[1]
    if weight_name not in weights or (bias_name is not None and bias_name not in weights):
        raise EngineUnavailable("recognition model: classifier weights are not constants")
    index = np.asarray(keep, dtype=np.int64)
    weight = numpy_helper.to_array(weights[weight_name])
    classes = int(weight.shape[0] if transposed else weight.shape[-1])
    cut = weight[index] if transposed else weight[..., index]
    weights[weight_name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(cut), weight_name))
    if bias_name is not None:
        bias = numpy_helper.to_array(weights[bias_name])
        weights[bias_name].CopyFrom(numpy_helper.from_array(bias[..., index], bias_name))
    for info in [*model.graph.value_info, output]:  # shapes recorded after the cut
        dims = info.type.tensor_type.shape.dim
        if dims and dims[len(dims) - 1].dim_value == classes:
            dims[len(dims) - 1].dim_value = len(keep)
    return model


class PpOcrEngine:
    """PP-OCRv6 detection and (Latin-pruned) recognition, run directly on ONNX Runtime."""

    name = EngineName.RAPIDOCR

    def __init__(
        self,
        threads: int = 1,
        *,
        latin_only: bool = True,
        det: DetSettings | None = None,
        rec: RecSettings | None = None,
        reader: str = "ppocr",
    ) -> None:
        try:
            import cv2  # noqa: F401
            import onnx
        except ImportError as error:
            raise EngineUnavailable(
                "the PP-OCR runner needs onnx, onnxruntime and opencv: "
                "pip install 'radguard[pixels]'"
            ) from error
        models = _rapidocr_models()
        self.det_settings = det or DetSettings()
        self.rec_settings = rec or RecSettings()
        self.latin_only = latin_only
        self._det = _session(str(models["det"]), threads)
        self._det_input = self._det.get_inputs()[0].name
        self._rec, self._charset = self._load_rec(
            models["rec"], threads, latin_only, self.rec_settings.height, onnx
        )
        self._rec_input = self._rec.get_inputs()[0].name
        self.reader = reader
        self._latin: LatinRecognizer | None = None
        if reader == "radguard":
            from radguard.pixels.latin import LatinRecognizer

            self._latin = LatinRecognizer(threads)
        elif reader != "ppocr":
            raise ValueError(f"unknown reader {reader!r} (radguard or ppocr)")

    @staticmethod
    def _load_rec(
        path: Path, threads: int, latin_only: bool, height: int, onnx: Any
    ) -> tuple[onnxruntime.InferenceSession, list[str]]:
        model = onnx.load(str(path))
        classes = _classes(model)
        if not latin_only and height == _REC_HEIGHT:
            return _session(str(path), threads), classes
        if height != _REC_HEIGHT:
            rows = model.graph.input[0].type.tensor_type.shape.dim[2]
            rows.Clear()
            rows.dim_param = "height"
        keep = list(range(len(classes)))
        if latin_only:
            wanted = latin_charset()
            keep = [0] + [i for i, c in enumerate(classes) if i > 0 and c in wanted]
            model = prune_classifier(model, keep)
        return _session(model.SerializeToString(), threads), [classes[i] for i in keep]

    @property
    def charset(self) -> list[str]:
        """The recognizer's classes: index 0 is the CTC blank ("")."""
        return list(self._charset)

    # detection

    def detect_map(self, image: Image) -> NDArray[np.float32]:
        """The detector's text probability for every pixel of ``image`` (rows, cols)."""
        bgr = _bgr(image)
        rows, cols = bgr.shape[:2]
        padded_rows = -(-rows // _DET_ALIGN) * _DET_ALIGN
        padded_cols = -(-cols // _DET_ALIGN) * _DET_ALIGN
        tensor = np.zeros((1, 3, padded_rows, padded_cols), np.float32)
        tensor[0, :, :, :] = _NORMALISE[0]
        if bgr.ndim == 2:
            tensor[0, :, :rows, :cols] = _NORMALISE[bgr][None]
        else:
            tensor[0, :, :rows, :cols] = _NORMALISE[bgr].transpose(2, 0, 1)
        output = self._det.run(None, {self._det_input: tensor})[0]
        prob: NDArray[np.float32] = np.ascontiguousarray(output[0, 0, :rows, :cols])
        return prob

    def detect(self, image: Image) -> list[Box]:
        return self.boxes_from_map(self.detect_map(image))

    def boxes_from_map(self, prob: NDArray[np.float32]) -> list[Box]:
        """Text boxes from a probability map: components above ``thresh`` whose mean
        probability (over their bounding box) reaches ``box_thresh``, grown by the unclip
        distance."""
        import cv2

        settings = self.det_settings
        rows, cols = prob.shape
        text = (prob > settings.thresh).astype(np.uint8)
        mask = cv2.dilate(text, np.ones((2, 2), np.uint8))  # as RapidOCR: joins hairline gaps
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count <= 1:
            return []
        sums = cv2.integral(prob.astype(np.float64))
        boxes = []
        for x, y, w, h, _ in stats[1:]:
            if min(w, h) - 1 < settings.min_side:
                continue
            total = sums[y + h, x + w] - sums[y, x + w] - sums[y + h, x] + sums[y, x]
            if total / (w * h) < settings.box_thresh:
                continue
            grow = w * h * settings.unclip_ratio / (2.0 * (w + h))
            x0, y0 = max(0, math.floor(x - grow)), max(0, math.floor(y - grow))
            x1, y1 = min(cols, math.ceil(x + w + grow)), min(rows, math.ceil(y + h + grow))
            if min(x1 - x0, y1 - y0) <= settings.min_side:
                continue
            boxes.append(Box(int(x0), int(y0), int(x1 - x0), int(y1 - y0)))
        boxes.sort(key=lambda b: (b.y, b.x))
        return boxes

    # recognition

    def read(self, image: Image, boxes: list[Box]) -> list[Line]:
        """The lines in ``boxes`` read by the engine's reader."""
        crops = [_crop(image, box) for box in boxes]
        texts = self._latin.read_crops(crops) if self._latin else self.read_crops(crops)
        return [Line(box, text, score) for box, (text, score) in zip(boxes, texts, strict=True)]

    def read_second(self, image: Image, boxes: list[Box]) -> list[Line] | None:
        """The lines read by the other recognizer (PP-OCR's, when radguard's reads first), for
        second readings of lines in doubt; None when there is no other recognizer."""
        if self._latin is None:
            return None
        texts = self.read_crops([_crop(image, box) for box in boxes])
        return [Line(box, text, score) for box, (text, score) in zip(boxes, texts, strict=True)]

    def read_alternatives(
        self,
        image: Image,
        lines: list[Line],
        probs: list[NDArray[np.float32] | None] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Other likely readings of each line's box by radguard's recognizer (its beam search),
        scored no higher than the line's own reading; none when PP-OCR reads alone.
        ``probs``: the boxes' probabilities from :meth:`line_probs`, where already computed."""
        if self._latin is None:
            return [[] for _ in lines]
        crops = [_crop(image, line.box) for line in lines]
        readings = [(line.text, line.score) for line in lines]
        return self._latin.alternatives(crops, readings, probs=probs)

    def line_probs(
        self, image: Image, boxes: list[Box]
    ) -> tuple[list[str], list[NDArray[np.float32] | None]]:
        """The reader's per-step class probabilities for each box (None: nothing to read),
        with its characters (index 0 the CTC blank): what :class:`lexicon.Speller` weighs."""
        crops = [_crop(image, box) for box in boxes]
        if self._latin is not None:
            return self._latin.charset, self._latin.probs(crops)
        return self._charset, self._probs(crops)

    def read_crops(self, crops: list[Image]) -> list[tuple[str, float]]:
        """PP-OCR's text and confidence (mean of the emitted characters' probabilities) of
        each crop (grey or RGB, like the images)."""
        return [("", 0.0) if probs is None else self._decode(probs) for probs in self._probs(crops)]

    def _probs(self, crops: list[Image]) -> list[NDArray[np.float32] | None]:
        """PP-OCR's per-step class probabilities for each crop (None: nothing to read)."""
        results: list[NDArray[np.float32] | None] = [None] * len(crops)
        inputs: list[tuple[int, NDArray[np.float32]]] = []
        for index, crop in enumerate(crops):
            if crop.size == 0 or min(crop.shape[:2]) < 2:
                continue
            inputs.append((index, self._rec_input_of(_bgr(crop))))
        inputs.sort(key=lambda item: item[1].shape[2])
        for batch in self._batches(inputs):
            width = batch[-1][1].shape[2]
            tensor = np.zeros((len(batch), 3, self.rec_settings.height, width), np.float32)
            for row, (_, array) in enumerate(batch):
                tensor[row, :, :, : array.shape[2]] = array
            probs = self._rec.run(None, {self._rec_input: tensor})[0]
            for row, (index, _) in enumerate(batch):
                results[index] = probs[row]  # padded to the batch's width, as always read
        return results

    def _rec_input_of(self, crop: Image) -> NDArray[np.float32]:
        """The crop at the model's height, normalised, channels first (3, 48, width)."""
        import cv2

        rows, cols = crop.shape[:2]
        height = self.rec_settings.height
        width = max(self.rec_settings.min_width, math.ceil(height * cols / rows))
        resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
        values = _NORMALISE[resized]
        if values.ndim == 2:
            return np.broadcast_to(values[None], (3, height, width))  # type: ignore[no-any-return]
        return values.transpose(2, 0, 1)  # type: ignore[no-any-return]

    def _batches(
        self, inputs: list[tuple[int, NDArray[np.float32]]]
    ) -> list[list[tuple[int, NDArray[np.float32]]]]:
        """Consecutive runs (inputs sorted by width) whose padding stays under the cap."""
        settings = self.rec_settings
        batches: list[list[tuple[int, NDArray[np.float32]]]] = []
        current: list[tuple[int, NDArray[np.float32]]] = []
        used = 0
        for item in inputs:
            width = item[1].shape[2]
            if current:
                total = width * (len(current) + 1)
                waste = 1.0 - (used + width) / total
                if (
                    len(current) >= settings.max_batch
                    or waste > settings.max_padding
                    or width >= settings.batch_below
                ):
                    batches.append(current)
                    current, used = [], 0
            current.append(item)
            used += width
        if current:
            batches.append(current)
        return batches

    def _decode(self, probs: NDArray[np.float32]) -> tuple[str, float]:
        """CTC greedy decoding of one crop."""
        return ctc_greedy(probs, self._charset)


def _bgr(image: Image) -> Image:
    """Grey stays grey (the caller replicates it); RGB becomes BGR, the models' order."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return image[..., ::-1]
    raise ValueError(f"expected a (rows, cols) or (rows, cols, 3) image, got {image.shape}")


def _crop(image: Image, box: Box) -> Image:
    rows, cols = image.shape[:2]
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(cols, box.x + max(box.w, 1)), min(rows, box.y + max(box.h, 1))
    return image[y0:y1, x0:x1]
