"""Reading released pixels for the verifier: OCR findings, and answer-key boxes still legible.

``radguard verify`` uses the same engine and passes as the pixel stage: any line read in a
released image that holds an identifier of the originals, or that looks identifying, is a
finding. Phantom answer-key boxes are scored on the pixels themselves: a burned line counts
as removed when its glyph pixels no longer stand out in its ink.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from radguard.pixels.classify import Classifier, Verdict
from radguard.settings import PixelPolicy


def read_released(
    path: Path,
    settings: PixelPolicy,
    is_identifier: Callable[[str], list[str]],
    cleaner: Any = None,
) -> list[tuple[int, str, str]] | None:
    """(frame, text, why) of identifying lines read in ``path``; None when not an image to read.

    ``is_identifier`` returns the reasons a line holds an identifier of the originals: those
    count however unsure the reading. A line that only looks identifying (a name, a date)
    counts when read at ``settings.min_score`` or more: the edges of painted boxes over
    speckle read as junk ('HEE EE' at 0.21 fits "first name and surname"), which is no
    finding, as the pixel stage does not trust such a reading either.
    """
    import pydicom

    from radguard.pixels.clean import PixelCleaner, triage

    ds = pydicom.dcmread(path)
    if triage(ds, settings) is None:
        return None
    cleaner = cleaner or PixelCleaner(settings)
    report = cleaner.scan(ds, ())
    generic = Classifier(())
    found = []
    for line in report.found:
        reasons = is_identifier(line.text)
        if not reasons and line.score >= settings.min_score:
            decision = generic.decide(line.text)
            if decision.verdict is Verdict.IDENTIFYING:
                reasons = [decision.why]
        if reasons:
            found.append((line.frame, line.text, reasons[0]))
    return found


def box_legible(array: np.ndarray, frame: int, box: dict[str, Any], samples: int) -> bool | None:
    """Whether an answer-key box's text still shows in ``array`` (None: box out of range)."""
    from radguard.phantom.burn import Font, text_mask

    frames = array if array.ndim == (4 if samples > 1 else 3) else array[None]
    if frame >= frames.shape[0]:
        return None
    mask = text_mask(str(box["text"]), Font(str(box["font"]), int(box["size"])))
    x, y = int(box["x"]), int(box["y"])
    h, w = mask.shape
    region = frames[frame, y : y + h, x : x + w]
    if region.shape[:2] != mask.shape:
        return None
    ink = np.asarray(box["ink"], dtype=np.float64)
    same = np.all(region == ink, axis=-1) if samples > 1 else region == ink[0]
    on_glyphs = float(same[mask].mean()) if mask.any() else 0.0
    off_glyphs = float(same[~mask].mean()) if (~mask).any() else 0.0
    return on_glyphs >= 0.5 and off_glyphs < 0.5
