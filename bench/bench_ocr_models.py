"""OCR model benchmark: RapidOCR's wrapper against radguard's direct PP-OCR runner.

Run from the repository root (the CPU may be shared: use nice)::

    nice .venv/bin/python bench/bench_ocr_models.py
    nice .venv/bin/python bench/bench_ocr_models.py --images 40 --threads 1 --half --variants

Same packaged models (PP-OCRv6 small, rapidocr wheel) run three ways: RapidOCR's own wrapper
(``RapidOcrEngine``), ``PpOcrEngine`` with the full 18,710-class head, and ``PpOcrEngine``
with the head pruned to Latin characters; and radguard's own recognizer
(``reader="radguard"``, :mod:`radguard.pixels.latin`) reading the same crops and boxes.
``--all-lines`` scores every line, the small (cap < 10 px) and faint (10%) ones too.
Corpus: ``single_frames(seed, images)`` from ``radguard.phantom.pixelbench``; target lines
are those with cap height >= 10 px and contrast >= 0.2 (what the pixel pipeline must read
at 1x). Figures:

* detection: ms per 512 x 512 frame, and the share of target lines whose box lies inside
  the union of the detected boxes it touches ("covered"); with ``--half``, the runner also on
  the frame at half size (boxes scaled back), by cap height;
* recognition on ground-truth crops (the line's box grown by a quarter of its height):
  ms per line, one crop per call and all crops of a frame in one call, exact-match rate and
  mean normalised edit distance (also ignoring spaces), and how often pruned == unpruned;
* end to end (detect, then read the detected boxes): for each target line, the texts of the
  boxes that touch it, left to right, joined by a space, against the truth;
* with ``--variants``: cheaper recognition inputs on the same crops (a lower input height,
  crops squeezed in width, padded crops as RapidOCR pads them), time and accuracy.

Times are CPU seconds of this process (every session runs on one ONNX thread, in the
calling thread), the best of ``--repeat`` passes: on a shared machine wall time mostly
measures the neighbours.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from radguard.phantom.pixelbench import BurnedLine, read_distance, single_frames
from radguard.pixels.engines import Box, Image, OcrEngine, RapidOcrEngine
from radguard.pixels.frames import decode, display
from radguard.pixels.ppocr import PpOcrEngine


@dataclass
class Frame:
    image: Image
    targets: list[BurnedLine]


def _accuracy(pairs: Sequence[tuple[str, str]]) -> str:
    exact = np.mean([r == t for r, t in pairs])
    distance = np.mean([read_distance(r, t) for r, t in pairs])
    spaceless = np.mean([read_distance(r.replace(" ", ""), t.replace(" ", "")) for r, t in pairs])
    return f"exact {exact:6.1%}  edit {distance:.4f}  edit w/o spaces {spaceless:.4f}"


def _target(line: BurnedLine) -> bool:
    return line.cap_height >= 10 and line.contrast >= 0.2


def _frames(seed: int, count: int, every: bool = False) -> list[Frame]:
    frames = []
    for bench in single_frames(seed, count):
        image = display(bench.dataset, decode(bench.dataset))[0]
        frames.append(Frame(image, [ln for ln in bench.lines if every or _target(ln)]))
    return frames


def _covered(line: BurnedLine, boxes: list[Box]) -> bool:
    truth = Box(line.x, line.y, line.w, line.h)
    touching = [b for b in boxes if b.overlap(truth)]
    if not touching:
        return False
    union = touching[0]
    for box in touching[1:]:
        union = union.union(box)
    return union.overlap(truth) == truth.area and _gap_free(truth, touching)


def _gap_free(truth: Box, boxes: list[Box]) -> bool:
    """Every column of the line lies in some box (the union alone may bridge a gap)."""
    columns = np.zeros(truth.w, bool)
    for box in boxes:
        if box.y <= truth.y and box.y + box.h >= truth.y + truth.h:
            columns[max(0, box.x - truth.x) : max(0, box.x + box.w - truth.x)] = True
    return bool(columns.all())


def _half(engine: PpOcrEngine) -> Callable[[Image], list[Box]]:
    import cv2

    def detect(image: Image) -> list[Box]:
        rows, cols = image.shape[:2]
        small = cv2.resize(image, (cols // 2, rows // 2), interpolation=cv2.INTER_AREA)
        return [b.scaled(0.5) for b in engine.detect(np.asarray(small, np.uint8))]

    return detect


def bench_detection(
    frames: list[Frame], detectors: dict[str, Callable[[Image], list[Box]]], repeat: int
) -> dict[str, list[list[Box]]]:
    found: dict[str, list[list[Box]]] = {}
    total = sum(len(f.targets) for f in frames)
    print(f"\n-- detection: {len(frames)} frames 512 x 512, {total} target lines")
    best: dict[str, float] = {}
    for detect in detectors.values():
        detect(frames[0].image)  # warm up
    for _ in range(repeat):  # detectors take turns, so that they share the machine's moods
        for name, detect in detectors.items():
            started = time.process_time()
            found[name] = [detect(f.image) for f in frames]
            best[name] = min(best.get(name, float("inf")), time.process_time() - started)
    for name, boxes in found.items():
        seconds = best[name]
        hits = sum(_covered(t, b) for f, b in zip(frames, boxes, strict=True) for t in f.targets)
        by_cap: dict[str, list[int]] = {}
        for frame, frame_boxes in zip(frames, boxes, strict=True):
            for line in frame.targets:
                bucket = by_cap.setdefault("cap>=20" if line.cap_height >= 20 else "cap<20", [0, 0])
                bucket[0] += _covered(line, frame_boxes)
                bucket[1] += 1
        buckets = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(by_cap.items()))
        print(
            f"{name:24s} {seconds / len(frames) * 1000:7.1f} ms/frame  covered {hits}/{total}"
            f" ({buckets}); boxes {sum(len(b) for b in boxes)}"
        )
    return found


def bench_recognition(frames: list[Frame], engines: dict[str, OcrEngine], repeat: int) -> None:
    crops = []
    for frame in frames:
        rows, cols = frame.image.shape[:2]
        boxes = [Box(t.x, t.y, t.w, t.h).grow(max(3, t.h // 4), cols, rows) for t in frame.targets]
        crops.append((frame.image, boxes, [t.text for t in frame.targets]))
    lines = sum(len(b) for _, b, _ in crops)
    print(f"\n-- recognition on ground-truth crops: {lines} lines")
    texts: dict[str, list[str]] = {}
    times: dict[tuple[str, str], float] = {}
    for engine in engines.values():
        engine.read(crops[0][0], crops[0][1][:1])  # warm up
    for _ in range(repeat):  # engines take turns, so that they share the machine's moods
        for name, engine in engines.items():
            started = time.process_time()
            read = [engine.read(image, [box])[0] for image, boxes, _ in crops for box in boxes]
            middle = time.process_time()
            for image, boxes, _ in crops:
                engine.read(image, boxes)
            ended = time.process_time()
            texts[name] = [line.text for line in read]
            for kind, seconds in (("one", middle - started), ("many", ended - middle)):
                times[name, kind] = min(times.get((name, kind), float("inf")), seconds)
    truth = [t for _, _, ts in crops for t in ts]
    for name in engines:
        print(
            f"{name:24s} {times[name, 'one'] / lines * 1000:6.1f} ms/line (1 per call) "
            f"{times[name, 'many'] / lines * 1000:6.1f} ms/line (frame per call)  "
            + _accuracy(list(zip(texts[name], truth, strict=True)))
        )
    if "runner pruned" in texts and "runner unpruned" in texts:
        same = sum(
            a == b for a, b in zip(texts["runner pruned"], texts["runner unpruned"], strict=True)
        )
        print(f"pruned == unpruned: {same}/{lines} lines")


def bench_end_to_end(
    frames: list[Frame],
    engines: dict[str, OcrEngine],
    boxes: dict[str, list[list[Box]]],
) -> None:
    print("\n-- end to end (each engine's own boxes, then its reading)")
    for name, engine in engines.items():
        detected = boxes[name]
        pairs = []
        started = time.process_time()
        read_lines = 0
        for frame, frame_boxes in zip(frames, detected, strict=True):
            lines = engine.read(frame.image, frame_boxes)
            read_lines += len(lines)
            for target in frame.targets:
                truth = Box(target.x, target.y, target.w, target.h)
                touching = sorted(
                    (ln for ln in lines if ln.box.overlap(truth)), key=lambda ln: ln.box.x
                )
                pairs.append((" ".join(ln.text for ln in touching), target.text))
        seconds = time.process_time() - started
        print(
            f"{name:24s} read {read_lines} boxes in {seconds / max(read_lines, 1) * 1000:6.1f} "
            f"ms/box  " + _accuracy(pairs)
        )


class _Variant(PpOcrEngine):
    """The pruned runner with its recognition input changed: width scaled by ``squeeze``,
    then ``pad`` more columns, or padded to at least ``at_least`` columns (as RapidOCR)."""

    def __init__(self, threads: int, squeeze: float = 1.0, pad: int = 0, at_least: int = 0):
        super().__init__(threads)
        self.squeeze, self.pad, self.at_least = squeeze, pad, at_least

    def _rec_input_of(self, crop: Image) -> NDArray[np.float32]:
        import cv2

        if self.squeeze != 1.0:
            rows, cols = crop.shape[:2]
            width = max(1, round(cols * self.squeeze))
            crop = np.asarray(cv2.resize(crop, (width, rows), interpolation=cv2.INTER_AREA))
        array = super()._rec_input_of(crop)
        width = max(array.shape[2] + self.pad, self.at_least)
        if width == array.shape[2]:
            return array
        padded = np.zeros((3, array.shape[1], width), np.float32)
        padded[:, :, : array.shape[2]] = array
        return padded


def bench_variants(frames: list[Frame], threads: int) -> None:
    """Cheaper recognition inputs, on the ground-truth crops: what they cost in accuracy."""
    from radguard.pixels.ppocr import RecSettings

    variants: dict[str, OcrEngine] = {
        "as built (h 48)": PpOcrEngine(threads),
        "height 40": PpOcrEngine(threads, rec=RecSettings(height=40)),
        "height 32": PpOcrEngine(threads, rec=RecSettings(height=32)),
        "width x0.85": _Variant(threads, squeeze=0.85),
        "width x0.7": _Variant(threads, squeeze=0.7),
        "padded +16 columns": _Variant(threads, pad=16),
        "padded to >= 320": _Variant(threads, at_least=320),
    }
    print("\n-- recognition variants (pruned runner)")
    bench_recognition(frames, variants, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--half", action="store_true", help="also detect at half size")
    parser.add_argument(
        "--all-lines", action="store_true", help="every line, small and faint ones too"
    )
    parser.add_argument(
        "--variants", action="store_true", help="also read with cheaper recognition inputs"
    )
    args = parser.parse_args()
    print(
        f"cores: {os.cpu_count()}, threads: {args.threads}, "
        f"load average at start: {os.getloadavg()[0]:.2f}"
    )
    frames = _frames(args.seed, args.images, args.all_lines)
    rapid = RapidOcrEngine(threads=args.threads)
    pruned = PpOcrEngine(args.threads)
    full = PpOcrEngine(args.threads, latin_only=False)
    detectors: dict[str, Callable[[Image], list[Box]]] = {
        "rapidocr wrapper": rapid.detect,
        "runner pruned": pruned.detect,
    }
    if args.half:
        detectors["runner at half size"] = _half(pruned)
    boxes = bench_detection(frames, detectors, args.repeat)
    boxes["runner unpruned"] = boxes["runner pruned"]
    engines: dict[str, OcrEngine] = {
        "rapidocr wrapper": rapid,
        "runner unpruned": full,
        "runner pruned": pruned,
        "radguard recognizer": PpOcrEngine(args.threads, reader="radguard"),
    }
    boxes["radguard recognizer"] = boxes["runner pruned"]
    bench_recognition(frames, engines, args.repeat)
    bench_end_to_end(frames, engines, boxes)
    if args.variants:
        bench_variants(frames, args.threads)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
