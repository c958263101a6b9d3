"""Clean Pixel Data benchmark: recall, precision, clinical labels kept, speed, engines side by side.

Run from the repository root (the CPU may be shared: use nice, and read the OCR share)::

    nice .venv/bin/python bench/bench_pixels.py                 # RapidOCR and Tesseract
    nice .venv/bin/python bench/bench_pixels.py --images 40 --engines rapidocr --no-cine

The corpus comes from ``radguard.phantom.pixelbench`` (deterministic from ``--seed``):
512 x 512 frames with identifying lines and clinical labels burned in every installed font,
cap heights 5-40 px, contrasts 10-100%; text-free frames; an 800 x 600 x 100-frame cine with
a static banner over moving content. Every image goes through ``PixelCleaner.clean`` (read,
decide, redact, read again), as the pipeline runs it. Scores:

* recall: identifying lines whose every ink pixel lies inside the redacted area (or whose
  file was refused: nothing of it is released), by cap height and contrast;
* clinical labels kept: labels with no more than 5% of their ink pixels redacted;
* precision: share of the redacted area that lies inside a burned line's box (plus margin);
* false redaction: text-free images with anything redacted;
* stranger names (``--strangers N``): names the header does not hold (census surnames a
  letter or two from a clinical word half the time), fully covered: only what a name looks
  like catches them, so this measures what the label rules let through;
* ``--labels held-out``: clinical labels never used to tune the stage, instead of the bench's;
* speed: images per second (wall and CPU time), and the share of time inside the OCR engine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _redacted_mask(report: Any, frames: int, rows: int, cols: int, margin: int) -> np.ndarray:
    mask = np.zeros((frames, rows, cols), bool)
    for found in report.found:
        if not found.redacted:
            continue
        b = found.box.grow(margin, cols, rows)
        mask[found.frame, b.y : b.y + b.h, b.x : b.x + b.w] = True
    return mask


def _score_image(image: Any, cleaner: Any, tally: dict[str, Any]) -> None:
    from radguard.errors import Rejected
    from radguard.phantom.pixelbench import glyph_mask

    ds = image.dataset
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    identifiers = _identifiers(ds)
    started, cpu = time.perf_counter(), _cpu()
    try:
        report = cleaner.clean(ds, identifiers)
        refused = False
    except Rejected:
        report, refused = None, True
    tally["seconds"] += time.perf_counter() - started
    tally["cpu"] += _cpu() - cpu
    tally["images"] += 1
    tally["frames"] += frames
    if refused:
        tally["refused"] += 1
    else:
        tally["ocr_seconds"] += report.stats.ocr_seconds
    margin = cleaner.policy.margin
    mask = (
        np.ones((frames, rows, cols), bool)
        if refused
        else _redacted_mask(report, frames, rows, cols, margin)
    )
    text_area = np.zeros((frames, rows, cols), bool)
    for line in image.lines:
        glyphs = glyph_mask(line)
        targets = range(frames) if line.frame < 0 else [line.frame]
        covered = []
        for f in targets:
            box = mask[f, line.y : line.y + line.h, line.x : line.x + line.w]
            covered.append(float(box[glyphs].mean()) if glyphs.any() else 1.0)
            y0, x0 = max(0, line.y - margin - 2), max(0, line.x - margin - 2)
            text_area[f, y0 : line.y + line.h + margin + 2, x0 : line.x + line.w + margin + 2] = (
                True
            )
        if line.identifying:
            bucket = _bucket(line.cap_height, line.contrast)
            tally["id"][bucket][1] += 1
            if min(covered) >= 1.0:
                tally["id"][bucket][0] += 1
            else:
                tally["missed"].append((line.cap_height, line.contrast, line.font, line.colour))
                tally["left"].append(f"{min(covered):.0%} covered " + _why_left(line, report))
        else:
            tally["clinical"][1] += 1
            by_size = tally["labels"][_bucket(line.cap_height, line.contrast)]
            by_size[1] += 1
            if max(covered) <= 0.05:
                tally["clinical"][0] += 1
                by_size[0] += 1
            elif report is not None:
                tally["lost"].append(_why_lost(line, report, margin))
                tally["causes"][_cause(line, report, margin, max(covered))] += 1
    if not refused:
        tally["redacted_px"] += int(mask.sum())
        tally["redacted_outside"] += int((mask & ~text_area).sum())
        if not image.lines and mask.any():
            tally["false_images"] += 1
    if not image.lines:
        tally["free_images"] += 1


def _paint_over(line: Any, report: Any, margin: int) -> list[Any]:
    """What was painted over a burned line (in its frame, the paint's margin counted)."""
    from radguard.pixels.engines import Box

    here = Box(line.x, line.y, line.w, line.h)
    return [
        found
        for found in report.found
        if found.redacted
        and (line.frame < 0 or found.frame == line.frame)
        and found.box.grow(margin, 10**6, 10**6).overlap(here)
    ]


def _why_lost(line: Any, report: Any, margin: int) -> str:
    """One lost label and the painted boxes over it: synthetic text only (bench corpus)."""
    reasons = [
        f"{found.text!r}/{found.score:.2f}/{found.why}"
        for found in _paint_over(line, report, margin)
    ]
    return (
        f"{line.text!r} cap {line.cap_height} c {line.contrast:.0%} {line.font} {line.colour}: "
        + "; ".join(sorted(set(reasons)))
    )


def _cause(line: Any, report: Any, margin: int, covered: float) -> str:
    """Why a label was lost, in three kinds: grazed (under half its ink painted: paint of
    a line beside it), painted with identifying text (one box, one row, or reaching along
    it), or read as no label (misread, cut short, unreadable)."""
    from radguard.pixels.clean import Verdict

    if covered < 0.5:
        return "grazed by paint (under half its ink)"
    if any(f.verdict is Verdict.IDENTIFYING for f in _paint_over(line, report, margin)):
        return "painted with identifying text"
    return "read as no label (misread, cut, unreadable)"


def _why_left(line: Any, report: Any) -> str:
    """One identifying line not fully covered and what was read over it, painted or kept:
    synthetic text only (bench corpus)."""
    from radguard.pixels.engines import Box

    if report is None:
        return f"{line.text!r}: refused"
    read = [
        f"{found.text!r}/{found.score:.2f}/{found.why}/{'painted' if found.redacted else 'kept'}"
        for found in report.found
        if (line.frame < 0 or found.frame == line.frame)
        and found.box.overlap(Box(line.x, line.y, line.w, line.h))
    ]
    return (
        f"{line.text!r} cap {line.cap_height} c {line.contrast:.0%} {line.font} {line.colour}: "
        + "; ".join(sorted(set(read)))
    )


def _identifiers(ds: Any) -> tuple[str, ...]:
    from radguard.pixels.classify import header_identifiers

    return header_identifiers(ds)


def _bucket(cap: int, contrast: float) -> str:
    size = "cap<10" if cap < 10 else ("cap10-15" if cap < 16 else "cap>=16")
    level = "c10%" if contrast < 0.2 else "c>=20%"
    return f"{size} {level}"


def _new_tally() -> dict[str, Any]:
    return {
        "id": defaultdict(lambda: [0, 0]),
        "clinical": [0, 0],
        "labels": defaultdict(lambda: [0, 0]),
        "missed": [],
        "lost": [],
        "causes": defaultdict(int),
        "left": [],
        "seconds": 0.0,
        "cpu": 0.0,
        "ocr_seconds": 0.0,
        "images": 0,
        "frames": 0,
        "refused": 0,
        "redacted_px": 0,
        "redacted_outside": 0,
        "false_images": 0,
        "free_images": 0,
    }


def run(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    from radguard.phantom.pixelbench import (
        CLINICAL_LABELS,
        HELD_OUT_LABELS,
        cine,
        single_frames,
        strangers,
        text_free,
    )
    from radguard.pixels.clean import PixelCleaner
    from radguard.settings import PixelEngine, PixelReader, load_policy

    policy = replace(
        load_policy("research").pixels,
        engine=PixelEngine(engine),
        reader=PixelReader(args.reader),
    )
    if args.passes:
        policy = replace(policy, passes=tuple(args.passes.split(",")))
    cleaner = PixelCleaner(policy)
    texted, free, movie, strange = _new_tally(), _new_tally(), _new_tally(), _new_tally()
    labels = HELD_OUT_LABELS if args.labels == "held-out" else CLINICAL_LABELS
    for image in single_frames(args.seed, args.images, labels=labels):
        _score_image(image, cleaner, texted)
    for image in text_free(args.seed, args.free):
        _score_image(image, cleaner, free)
    for image in strangers(args.seed, args.strangers):
        _score_image(image, cleaner, strange)
    if args.cine:
        _score_image(cine(args.seed, frames=args.cine_frames), cleaner, movie)
    return {"engine": engine, "texted": texted, "free": free, "cine": movie, "strange": strange}


def _worker_init() -> None:
    os.environ["RADGUARD_OCR_THREADS"] = "1"


def _clean_one(blob: bytes) -> float:
    """Clean one pickled dataset in a worker; its CPU seconds."""
    import pickle

    from radguard.errors import Rejected
    from radguard.pixels.classify import header_identifiers
    from radguard.pixels.clean import PixelCleaner
    from radguard.settings import load_policy

    global _CLEANER
    if _CLEANER is None:
        from dataclasses import replace as _replace

        from radguard.settings import PixelReader

        reader = PixelReader(os.environ.get("RADGUARD_BENCH_READER", "radguard"))
        _CLEANER = PixelCleaner(_replace(load_policy("research").pixels, reader=reader))
    ds = pickle.loads(blob)
    cpu = _cpu()
    with contextlib.suppress(Rejected):
        _CLEANER.clean(ds, header_identifiers(ds))
    return _cpu() - cpu


_CLEANER: Any = None
_ARGS: Any = None


def throughput(args: argparse.Namespace) -> dict[str, float]:
    """Images per second with ``--workers`` processes of one OCR thread each (how the
    pipeline runs: a process per core), on the same 512 x 512 frames."""
    import multiprocessing
    import pickle

    from radguard.phantom.pixelbench import single_frames

    blobs = [pickle.dumps(i.dataset) for i in single_frames(args.seed, args.images)]
    os.environ["RADGUARD_BENCH_READER"] = args.reader
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_worker_init) as pool:
        pool.map(_clean_one, blobs[: args.workers], chunksize=1)  # models loaded, warm
        started = time.perf_counter()
        cpu = sum(pool.map(_clean_one, blobs, chunksize=1))
        wall = time.perf_counter() - started
    return {"images": len(blobs), "wall": wall, "cpu": cpu}


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Out-of-the-box OCR redaction: RapidOCR's own pipeline (its wrapper, default passes),
    every box it finds painted, nothing decided: recall and speed on the same frames."""
    from radguard.phantom.pixelbench import glyph_mask, single_frames
    from radguard.pixels.engines import RapidOcrEngine
    from radguard.pixels.frames import decode, display

    engine = RapidOcrEngine(threads=1)
    covered = total = 0
    seconds = 0.0
    images = 0
    for image in single_frames(args.seed, args.images):
        view = display(image.dataset, decode(image.dataset))[0]
        started = time.perf_counter()
        boxes = engine.detect(view)
        engine.read(view, boxes)
        seconds += time.perf_counter() - started
        images += 1
        rows, cols = view.shape[:2]
        mask = np.zeros((rows, cols), bool)
        for box in boxes:
            b = box.grow(3, cols, rows)
            mask[b.y : b.y + b.h, b.x : b.x + b.w] = True
        for line in image.lines:
            if line.identifying and line.cap_height >= 10 and line.contrast >= 0.2:
                total += 1
                glyphs = glyph_mask(line)
                covered += bool(
                    mask[line.y : line.y + line.h, line.x : line.x + line.w][glyphs].all()
                )
    return {"covered": covered, "total": total, "rate": images / max(seconds, 1e-9)}


def _report(result: dict[str, Any]) -> None:
    t, f, c = result["texted"], result["free"], result["cine"]
    print(f"\n== {result['engine']} ==")
    target = [0, 0]
    print("identifying lines fully covered, by cap height and contrast:")
    for bucket in sorted(t["id"]):
        right, total = t["id"][bucket]
        print(f"  {bucket:<18} {right:>4}/{total:<4} {right / max(total, 1):6.1%}")
        if bucket.startswith(("cap10", "cap>=16")) and bucket.endswith(">=20%"):
            target[0] += right
            target[1] += total
    print(
        f"  TARGET (cap>=10 px, contrast>=20%): {target[0]}/{target[1]} "
        f"= {target[0] / max(target[1], 1):.1%}"
    )
    right, total = t["clinical"]
    print(f"clinical labels kept: {right}/{total} = {right / max(total, 1):.1%}")
    if t["causes"]:
        causes = ", ".join(f"{why} {n}" for why, n in sorted(t["causes"].items()))
        print(f"  lost: {causes}")
    for bucket in sorted(t["labels"]):
        right, total = t["labels"][bucket]
        print(f"  {bucket:<18} {right:>4}/{total:<4} {right / max(total, 1):6.1%}")
    inside = 1 - t["redacted_outside"] / max(t["redacted_px"], 1)
    print(f"precision (redacted area inside text boxes + margin): {inside:.1%}")
    print(f"false redaction: {f['false_images']}/{f['free_images']} text-free images")
    print(f"refused (identifying text still read after redaction): {t['refused']} images")
    for name, tally in (("512x512 with text", t), ("512x512 text-free", f)):
        if tally["images"]:
            print(
                f"speed {name}: {tally['images'] / tally['seconds']:.2f} images/s wall, "
                f"{tally['images'] / max(tally['cpu'], 1e-9):.2f} images/s per CPU-second, "
                f"OCR share {tally['ocr_seconds'] / tally['seconds']:.0%}"
            )
    if c["images"]:
        right, total = sum(v[0] for v in c["id"].values()), sum(v[1] for v in c["id"].values())
        print(
            f"cine {c['frames']} frames 800x600: {c['seconds']:.1f} s wall, {c['cpu']:.1f} s CPU, "
            f"OCR share {c['ocr_seconds'] / max(c['seconds'], 1e-9):.0%}; identifying lines "
            f"covered in every frame {right}/{total}; labels kept {c['clinical'][0]}/"
            f"{c['clinical'][1]}; refused {c['refused']}"
        )
    if getattr(_ARGS, "lost", False):
        for lost in t["lost"]:
            print(f"  lost label {lost}")
    s = result["strange"]
    if s["images"]:
        print("stranger names (not in the header) fully covered, by cap height and contrast:")
        for bucket in sorted(s["id"]):
            right, total = s["id"][bucket]
            print(f"  {bucket:<18} {right:>4}/{total:<4} {right / max(total, 1):6.1%}")
        right, total = sum(v[0] for v in s["id"].values()), sum(v[1] for v in s["id"].values())
        print(f"  all: {right}/{total} = {right / max(total, 1):.1%}")
        for left in s["left"]:
            print(f"  name left {left}")  # synthetic census names, not PHI
    for left in t["left"]:
        print(f"  identifying line left {left}")  # synthetic bench text, not PHI
    small = [m for m in t["missed"] if m[0] >= 10 and m[1] >= 0.2]
    if small:
        print(f"missed in the target range (cap, contrast, font, colour): {small[:12]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--free", type=int, default=20)
    parser.add_argument("--cine-frames", type=int, default=100)
    parser.add_argument("--no-cine", dest="cine", action="store_false")
    parser.add_argument("--engines", default="rapidocr,tesseract")
    parser.add_argument("--passes", default="", help="e.g. base,flat,chroma (default: policy)")
    parser.add_argument("--workers", type=int, default=2, help="processes for throughput")
    parser.add_argument(
        "--reader", default="radguard", help="rapidocr's recognizer: radguard or ppocr"
    )
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--lost", action="store_true", help="list each lost label and why")
    parser.add_argument(
        "--strangers", type=int, default=0, help="images of names the header does not hold"
    )
    parser.add_argument(
        "--labels", choices=("bench", "held-out"), default="bench", help="clinical labels drawn"
    )
    args = parser.parse_args()
    global _ARGS
    _ARGS = args
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    for engine in args.engines.split(","):
        result = run(engine.strip(), args)
        _report(result)
    if args.workers and args.images:
        done = throughput(args)
        print(
            f"\nthroughput, {args.workers} processes x 1 OCR thread, {done['images']} frames "
            f"512x512 with text (read, decide, paint, read again): "
            f"{done['images'] / done['wall']:.2f} images/s wall "
            f"({done['cpu'] / done['images']:.3f} CPU-s per image)"
        )
    if args.baseline and args.images:
        base = baseline(args)
        print(
            f"baseline, RapidOCR out of the box (its wrapper, one detection, every box painted): "
            f"identifying lines covered (cap>=10 px, contrast>=20%) {base['covered']}/"
            f"{base['total']} = {base['covered'] / max(base['total'], 1):.1%}; "
            f"{base['rate']:.2f} images/s (one thread, OCR only)"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
