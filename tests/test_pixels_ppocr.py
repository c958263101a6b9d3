"""The direct PP-OCR runner: detection covers big burned-in lines, the Latin-pruned recognizer
reads them as the full one does (its speed against RapidOCR's recognizer is a benchmark:
bench/bench_ocr_models.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("rapidocr")
pytest.importorskip("onnx")

from radguard.phantom.pixelbench import BurnedLine, read_distance, single_frames
from radguard.pixels.engines import Box, Image
from radguard.pixels.frames import decode, display
from radguard.pixels.ppocr import (
    PpOcrEngine,
    latin_charset,
    prune_classifier,
)


@dataclass
class Sample:
    image: Image
    lines: list[BurnedLine]  # the big, high-contrast lines of the frame


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    """Frames of the pixel bench (seed 11) holding lines of cap >= 16 px, contrast >= 0.6:
    8 lines in 7 frames, one of them colour, four fonts."""
    found = []
    for bench in single_frames(11, 12):
        big = [ln for ln in bench.lines if ln.cap_height >= 16 and ln.contrast >= 0.6]
        if big:
            found.append(Sample(display(bench.dataset, decode(bench.dataset))[0], big))
    assert sum(len(s.lines) for s in found) == 8
    assert any(s.image.ndim == 3 for s in found)
    return found


@pytest.fixture(scope="module")
def pruned() -> PpOcrEngine:
    return PpOcrEngine(threads=1)


@pytest.fixture(scope="module")
def unpruned() -> PpOcrEngine:
    return PpOcrEngine(threads=1, latin_only=False)


def _crops(samples: list[Sample]) -> list[tuple[Image, Box, str]]:
    crops = []
    for sample in samples:
        rows, cols = sample.image.shape[:2]
        for line in sample.lines:
            box = Box(line.x, line.y, line.w, line.h).grow(max(3, line.h // 4), cols, rows)
            crops.append((sample.image, box, line.text))
    return crops


def test_detect_map_keeps_the_frame_size_and_takes_grey_or_colour(pruned: PpOcrEngine) -> None:
    grey = np.zeros((100, 70), np.uint8)
    grey[40:60, 10:60] = 255
    prob = pruned.detect_map(grey)
    assert prob.shape == (100, 70) and prob.dtype == np.float32
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0
    assert pruned.detect_map(np.repeat(grey[:, :, None], 3, axis=2)).shape == (100, 70)
    assert pruned.detect(np.zeros((64, 64), np.uint8)) == []
    with pytest.raises(ValueError):
        pruned.detect_map(np.zeros((8, 8, 4), np.uint8))


def test_detection_covers_every_big_line(samples: list[Sample], pruned: PpOcrEngine) -> None:
    for sample in samples:
        boxes = pruned.detect(sample.image)
        rows, cols = sample.image.shape[:2]
        for line in sample.lines:
            truth = Box(line.x, line.y, line.w, line.h)
            touching = [b for b in boxes if b.overlap(truth)]
            assert touching, f"no box on a cap {line.cap_height} line"
            ink = np.zeros((rows, cols), bool)
            for box in touching:
                ink[box.y : box.y + box.h, box.x : box.x + box.w] = True
            assert ink[truth.y : truth.y + truth.h, truth.x : truth.x + truth.w].all()
            # boxes stay tight: no more than the unclip margin around the line
            union = touching[0]
            for box in touching[1:]:
                union = union.union(box)
            assert union.h <= 2.6 * truth.h and union.w <= truth.w + 2 * truth.h


def test_pruned_recognizer_reads_big_lines_like_the_full_one(
    samples: list[Sample], pruned: PpOcrEngine, unpruned: PpOcrEngine
) -> None:
    crops = _crops(samples)
    short = [pruned.read(image, [box])[0] for image, box, _ in crops]
    full = [unpruned.read(image, [box])[0] for image, box, _ in crops]
    distances = [
        read_distance(line.text, truth) for line, (_, _, truth) in zip(short, crops, strict=True)
    ]
    assert max(distances) <= 0.15 and float(np.mean(distances)) <= 0.05
    assert [line.text for line in short] == [line.text for line in full]
    for a, b in zip(short, full, strict=True):
        assert 0.5 < a.score <= 1.0
        assert a.score >= b.score - 1e-4  # renormalised over fewer classes: never lower


def test_batched_reading_gives_the_same_text(samples: list[Sample], pruned: PpOcrEngine) -> None:
    crops = _crops(samples)
    alone = [pruned.read(image, [box])[0] for image, box, _ in crops]
    # the same crops twice over: equal widths go through the model in batches
    twice = pruned.read_crops([_crop(image, box) for image, box, _ in crops + crops])
    assert [text for text, _ in twice] == [ln.text for ln in alone + alone]
    scores = [score for _, score in twice]
    assert scores == pytest.approx([ln.score for ln in alone + alone], abs=1e-4)
    assert len(pruned._batches([(i, np.zeros((3, 48, 64), np.float32)) for i in range(3)])) == 1
    # empty and degenerate boxes read as nothing
    image = samples[0].image
    lines = pruned.read(image, [Box(0, 0, 0, 0), Box(10, 10, 1, 30)])
    assert [(ln.text, ln.score) for ln in lines] == [("", 0.0), ("", 0.0)]
    assert pruned.read(image, []) == []


def _crop(image: Image, box: Box) -> Image:
    return np.ascontiguousarray(image[box.y : box.y + box.h, box.x : box.x + box.w])


def test_pruned_head_holds_latin_classes_only(pruned: PpOcrEngine) -> None:
    charset = pruned.charset
    assert charset[0] == "" and len(charset) == len(set(charset))
    assert set(charset[1:]) <= latin_charset()
    for wanted in "AZaz09:/.-^ ÖéßÅ°µ±×":
        assert wanted in charset
    assert 250 < len(charset) < 400  # from 18,710
    output = pruned._rec.get_outputs()[0].shape
    assert output[-1] == len(charset)


@pytest.mark.parametrize("head", ["matmul+add", "gemm"])
def test_prune_classifier_cuts_the_head_before_the_softmax(head: str) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 10)).astype(np.float32)
    bias = rng.normal(size=10).astype(np.float32)
    if head == "gemm":  # Gemm stores the weight transposed (classes first)
        shape, stored = [3, 4], weight.T.copy()
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["a"], transB=1)]
    else:
        shape, stored = [1, 3, 4], weight
        nodes = [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["a"]),
        ]
    graph = helper.make_graph(
        [
            *nodes,
            helper.make_node("Identity", ["a"], ["i"]),
            helper.make_node("Softmax", ["i"], ["y"], axis=-1),
        ],
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*shape[:-1], 10])],
        [numpy_helper.from_array(stored, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    keep = [0, 3, 7]
    cut = prune_classifier(model, keep)
    onnx.checker.check_model(cut)
    x = rng.normal(size=shape).astype(np.float32)
    got = ort.InferenceSession(cut.SerializeToString()).run(None, {"x": x})[0]
    logits = (x @ weight + bias)[..., keep]
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    assert got.shape == (*shape[:-1], 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ctc_decoding_collapses_repeats_and_drops_blanks(pruned: PpOcrEngine) -> None:
    charset = pruned.charset
    path = [charset.index(c) for c in ("A", "A", "", "A", "B", "B", "")]
    probs = np.full((len(path), len(charset)), 0.01, np.float32)
    for step, index in enumerate(path):
        probs[step, index] = 0.9 if step != 4 else 0.6
    text, score = pruned._decode(probs)
    assert text == "AAB"
    assert score == pytest.approx((0.9 + 0.9 + 0.6) / 3)
    assert pruned._decode(np.eye(len(charset), dtype=np.float32)[[0, 0]]) == ("", 0.0)
