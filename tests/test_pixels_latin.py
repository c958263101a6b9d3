"""radguard's packaged line recognizer: it loads from the package, reads overlay text drawn in
the fonts devices use, serves as the rapidocr engine's reader with PP-OCR's as the second
reading of lines in doubt, and its training script still trains and exports a model that
the runner can load (its accuracy and speed against PP-OCR's are benchmark figures:
bench/bench_pixels.py, bench/bench_ocr_models.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("rapidocr")

from radguard.errors import PolicyError
from radguard.phantom.burn import Font, available_fonts, text_mask
from radguard.phantom.pixelbench import read_distance
from radguard.pixels.detect import fused_view
from radguard.pixels.engines import Box
from radguard.pixels.latin import LatinRecognizer
from radguard.pixels.ppocr import PpOcrEngine
from radguard.settings import PixelReader, load_policy

ROOT = Path(__file__).resolve().parents[1]
LINES = ("SMITH^JOHN", "ID: 4471-2093", "DOB 03/11/1957", "LIVER TRV", "D1 1.23 cm", "12:41:07")


@pytest.fixture(scope="module")
def reader() -> LatinRecognizer:
    return LatinRecognizer(threads=1)


def _frame(text: str, font: Font, value: int = 255) -> tuple[np.ndarray, Box]:
    """``text`` burned into a dark speckled strip, and its box grown as a detector's."""
    mask = text_mask(text, font)
    h, w = mask.shape
    rng = np.random.default_rng(len(text))
    image = np.clip(rng.rayleigh(20.0, (h + 40, w + 40)), 0, 120).astype(np.uint8)
    image[20 : 20 + h, 20 : 20 + w][mask] = value
    grow = max(2, h // 3)
    return image, Box(20 - grow, 20 - grow, w + 2 * grow, h + 2 * grow)


def test_the_packaged_model_declares_how_to_feed_it(reader: LatinRecognizer) -> None:
    assert reader.height == 32 and reader.stride == 4
    assert reader.charset[0] == ""  # the CTC blank
    for ch in "AZaz09 .:/-^,#()°µ":
        assert ch in reader.charset


@pytest.mark.parametrize("font_name", [f for f in available_fonts() if f != "pil-bitmap"][:4])
def test_reads_overlay_lines_in_device_fonts(reader: LatinRecognizer, font_name: str) -> None:
    crops, truths = [], []
    for text in LINES:
        image, box = _frame(text, Font(font_name, 22))
        view = fused_view(image)
        crops.append(view[box.y : box.y + box.h, box.x : box.x + box.w])
        truths.append(text)
    read = reader.read_crops(crops)
    distance = np.mean(
        [read_distance(t, truth) for (t, _), truth in zip(read, truths, strict=False)]
    )
    exact = sum(t == truth for (t, _), truth in zip(read, truths, strict=False))
    assert exact >= len(LINES) - 1, read
    assert distance < 0.05
    assert all(0.0 < score <= 1.0 for _, score in read)


def test_empty_and_degenerate_crops_read_as_nothing(reader: LatinRecognizer) -> None:
    blank = np.zeros((30, 200), np.uint8)
    read = reader.read_crops([np.zeros((0, 5), np.uint8), np.zeros((1, 40), np.uint8), blank])
    assert read[0] == ("", 0.0) and read[1] == ("", 0.0)
    assert read[2][0].strip() == ""


def test_colour_crops_are_read_on_their_brightest_channel(reader: LatinRecognizer) -> None:
    image, box = _frame("RIGHT KIDNEY", Font(available_fonts()[-1], 20))
    colour = np.zeros((*image.shape, 3), np.uint8)
    colour[..., 1] = image  # green ink on a green-speckled ground
    crop = colour[box.y : box.y + box.h, box.x : box.x + box.w]
    grey = image[box.y : box.y + box.h, box.x : box.x + box.w]
    assert reader.read_crops([crop]) == reader.read_crops([grey])


def test_the_engine_reads_with_radguard_and_gives_ppocr_second_readings() -> None:
    ours = PpOcrEngine(threads=1, reader="radguard")
    theirs = PpOcrEngine(threads=1, reader="ppocr")
    image, box = _frame("DOE, JANE", Font(available_fonts()[-1], 24))
    first = ours.read(image, [box])[0]
    second = ours.read_second(image, [box])
    assert second is not None
    assert second[0].text == theirs.read(image, [box])[0].text
    assert theirs.read_second(image, [box]) is None
    assert read_distance(first.text, "DOE, JANE") <= 0.12
    with pytest.raises(ValueError, match="reader"):
        PpOcrEngine(threads=1, reader="nope")


def test_policy_reader_setting(tmp_path: Path) -> None:
    assert load_policy("research").pixels.reader is PixelReader.RADGUARD
    policy = tmp_path / "p.toml"
    policy.write_text('extends = "research"\n[pixels]\nreader = "ppocr"\n')
    assert load_policy(str(policy)).pixels.reader is PixelReader.PPOCR
    policy.write_text('extends = "research"\n[pixels]\nreader = "tesseract"\n')
    with pytest.raises(PolicyError, match="reader"):
        load_policy(str(policy))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (vet extra)")
def test_training_script_trains_and_exports_a_loadable_model(tmp_path: Path) -> None:
    """Two steps on the CPU: the script's data, model, loss and ONNX export still fit together
    (the shipped model came from the same script, on a GPU, for minutes)."""
    import onnxruntime as ort

    out = tmp_path / "rec.onnx"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_recognizer.py"),
            "--steps",
            "2",
            "--batch",
            "8",
            "--workers",
            "0",
            "--eval",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["height"] == "32" and "charset" in meta
    probs = session.run(None, {"image": np.zeros((3, 1, 32, 96), np.uint8)})[0]
    assert probs.shape[:2] == (3, 24)
    assert np.allclose(probs.sum(axis=2), 1.0, atol=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (vet extra)")
def test_training_script_tunes_from_the_packaged_model(tmp_path: Path) -> None:
    """``--from-onnx`` recovers the packaged model's weights (normalisation folded, the LSTM's
    gates reordered from ONNX's order to torch's): exported again untrained, it reads a real
    overlay crop with the packaged model's probabilities. A wrong gate order or a missing
    bias changes them."""
    import onnxruntime as ort

    from radguard.pixels.latin import model_bytes

    packaged = tmp_path / "packaged.onnx"
    packaged.write_bytes(model_bytes())
    out = tmp_path / "again.onnx"
    command = [sys.executable, str(ROOT / "scripts" / "train_recognizer.py"), "--from-onnx"]
    command += [str(packaged), "--minutes", "0", "--eval", "0", "--workers", "0"]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    mask = text_mask("LIVER TRV", Font(available_fonts()[-1], 16))
    crop = np.pad(np.where(mask, 220, 30).astype(np.uint8), 8, constant_values=30)
    height = 32
    width = int(crop.shape[1] * height / crop.shape[0])
    image = np.asarray(Image.fromarray(crop).resize((width, height)))[None, None]
    probs = [
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"image": image}
        )[0]
        for path in (packaged, out)
    ]
    assert probs[0].shape == probs[1].shape
    assert float(np.abs(probs[0] - probs[1]).max()) < 1e-4
    assert probs[0].max(axis=2).mean() > 0.5  # the crop is read, not all blank


def test_beam_search_sums_alignments_and_needs_a_blank_between_repeats() -> None:
    from radguard.pixels.latin import beams

    charset = ["", "a", "b"]
    one_hot = np.eye(3, dtype=np.float32)
    # a, blank, a: "aa"; a, a: "a" (held)
    assert beams(one_hot[[1, 0, 1]], charset)[0] == ("aa", pytest.approx(1.0))
    assert beams(one_hot[[1, 1]], charset)[0] == ("a", pytest.approx(1.0))
    # second step 60% b, 40% blank: "ab" 0.6, "a" 0.4
    probs = np.array([[0, 1, 0], [0.4, 0, 0.6]], np.float32)
    ranked = dict(beams(probs, charset))
    assert ranked["ab"] == pytest.approx(0.6) and ranked["a"] == pytest.approx(0.4)
    # "a" also arises from a, a (held) and blank, a: its alignments add up
    probs = np.array([[0.5, 0.5, 0], [0, 1, 0]], np.float32)
    assert beams(probs, charset) == [("a", pytest.approx(1.0))]


def test_alternatives_are_never_surer_than_the_reading(reader: LatinRecognizer) -> None:
    """Beam alternatives are scored as the reading's confidence times their probability
    relative to the best reading: a second reading drawn from them can never be trusted
    more than the reading itself (clean._second_opinion's thresholds mean confidence)."""
    crops, truths = [], []
    for k, text in enumerate(("LIVER TRV", "D1 1.23 cm", "SMITH^JOHN")):
        image, box = _frame(text, Font(available_fonts()[-1], 22), value=90 + 40 * k)
        crops.append(fused_view(image)[box.y : box.y + box.h, box.x : box.x + box.w])
        truths.append(text)
    readings = reader.read_crops(crops)
    assert readings[0][0] == "LIVER TRV"
    for (text, score), others in zip(readings, reader.alternatives(crops, readings), strict=True):
        assert all(alt != text and 0.0 < p <= score for alt, p in others)
        assert all(p >= 0.05 * score * 0.999 for _, p in others)


@pytest.mark.parametrize("reader_name", ["radguard", "ppocr"])
def test_both_readers_clean_a_frame(reader_name: str) -> None:
    """The whole stage (read, doubt, second readings, paint, re-read) with either reader: the
    burned-in name is painted, the clinical label is kept."""
    from dataclasses import replace

    from radguard.phantom.pixelbench import glyph_mask, single_frames
    from radguard.pixels.classify import header_identifiers
    from radguard.pixels.clean import PixelCleaner
    from radguard.pixels.frames import decode

    policy = replace(load_policy("research").pixels, reader=PixelReader(reader_name))
    cleaner = PixelCleaner(policy)
    image = next(
        i
        for i in single_frames(11, 12)
        if any(ln.identifying and ln.cap_height >= 16 and ln.contrast >= 0.6 for ln in i.lines)
    )
    ds = image.dataset
    before = decode(ds).array.copy()
    report = cleaner.clean(ds, header_identifiers(ds))
    after = decode(ds).array
    assert report.redacted >= 1
    for line in image.lines:
        if line.identifying and line.cap_height >= 16 and line.contrast >= 0.6:
            window = (slice(line.y, line.y + line.h), slice(line.x, line.x + line.w))
            changed = before[0][window] != after[0][window]
            if changed.ndim == 3:
                changed = changed.any(axis=2)
            assert changed[glyph_mask(line)].all()


def test_a_missing_model_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from radguard.pixels import latin
    from radguard.pixels.engines import EngineUnavailable

    monkeypatch.setattr(latin, "MODEL", "no-such-model.onnx")
    with pytest.raises(EngineUnavailable, match=r"no-such-model\.onnx.*reader"):
        LatinRecognizer(threads=1)
