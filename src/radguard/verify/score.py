"""Scoring a de-identified phantom set against its answer key (MIDI-B style).

For every planted item the key says whether it must go (``expect: remove``) or stay
(``expect: keep``); the score of a category is the share of required actions done right. An
item to remove in a file that was not released counts as removed (nothing of it is left); items
to keep in such files are counted apart (``kept_in_files_not_released``), so that the research
score measures over-removal in what was released. Date intervals between a patient's studies
are compared before and after. Burned-in text is scored on the released pixels: each answer-key
box whose glyphs still stand out in their ink is a leak.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from radguard.verify.identifiers import normalize
from radguard.verify.scan import Scanned, scan_file

_PIXEL_CATEGORIES = frozenset({"burned_in"})


def _entries(key: dict[str, Any]) -> list[dict[str, Any]]:
    for name in ("identifiers", "entries", "planted", "items"):
        value = key.get(name)
        if isinstance(value, list):
            return value
    return []


def _words(category: str, value: str) -> list[str]:
    """The normalized forms whose presence means the value is (still) there."""
    if category in ("patient_name", "staff_name") or "^" in value:
        parts = [p for p in re.split(r"[\^=\s]+", value) if len(p) >= 3]
        return [normalize(p) for p in parts] or [normalize(value)]
    return [normalize(value)]


def score_answer_key(
    key_path: Path, deid: Path, pairs: dict[str, str], outputs: dict[str, Scanned]
) -> dict[str, Any]:
    """Per-category shares of required actions done right, and research attributes kept."""
    key = json.loads(key_path.read_text())
    by_input = {source: out for out, source in pairs.items()}
    texts: dict[str, str] = {}
    all_paths = normalize(" ".join(outputs))

    def text_of(out: str) -> str:
        if out not in texts:
            scanned = scan_file(deid / out)
            texts[out] = " ".join(normalize(f.text) for f in scanned.fields if f.text)
        return texts[out]

    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    withheld: dict[str, int] = defaultdict(int)
    leaks: list[dict[str, str]] = []
    for entry in _entries(key):
        category = str(entry.get("category", "other"))
        expect = str(entry.get("expect", "remove"))
        value = str(entry.get("value", ""))
        if not value.strip() or category in _PIXEL_CATEGORIES:
            continue
        out = by_input.get(str(entry.get("file", "")))
        words = _words(category, value)
        if category == "filename":
            present = any(w in all_paths for w in words)
        elif out is None:
            if expect != "remove":
                withheld[category] += 1  # kept data of a file not released: counted apart
                continue
            present = False
        else:
            haystack = text_of(out)
            present = any(w in haystack for w in words)
        label = category if expect == "remove" else f"kept: {category}"
        right = (not present) if expect == "remove" else present
        tally[label][1] += 1
        if right:
            tally[label][0] += 1
        elif expect == "remove":
            leaks.append(
                {
                    "file": str(entry.get("file", "")),
                    "path": str(entry.get("path", "")),
                    "category": category,
                }
            )
    categories = {
        name: {"right": right, "total": total, "share": right / total if total else 1.0}
        for name, (right, total) in sorted(tally.items())
    }
    removed = [v for k, v in categories.items() if not k.startswith("kept:")]
    kept = [v for k, v in categories.items() if k.startswith("kept:")]
    burned = _burned_in(key, deid, by_input, leaks)
    if burned["total"]:
        categories["burned_in"] = burned
        removed.append(burned)
    intervals = _intervals(key, by_input, outputs)
    return {
        "categories": categories,
        "date_intervals": intervals,
        "leak_rate": 1
        - sum(v["right"] for v in removed) / max(1, sum(v["total"] for v in removed)),
        "research_kept": sum(v["right"] for v in kept) / max(1, sum(v["total"] for v in kept)),
        "leaks": leaks[:200],
        "kept_in_files_not_released": dict(withheld),
        "burned_in": burned,
    }


def _burned_in(
    key: dict[str, Any], deid: Path, by_input: dict[str, str], leaks: list[dict[str, str]]
) -> dict[str, Any]:
    """Answer-key text boxes no longer legible in the released pixels (or not released).

    Pixel boxes are read on the released pixels (glyph pixels still in their ink and standing
    out: legible); overlay boxes count as removed when the overlay is gone.
    """
    import pydicom

    from radguard.pixels.audit import box_legible

    identifying = {
        (str(e.get("file", "")), str(e.get("value", "")))
        for e in _entries(key)
        if e.get("category") == "burned_in" and e.get("expect", "remove") == "remove"
    }
    arrays: dict[str, Any] = {}
    right = total = 0
    for box in key.get("burned_in", []):
        if (str(box.get("file", "")), str(box.get("text", ""))) not in identifying:
            continue  # text burned on purpose that identifies no one (a dose table)
        total += 1
        out = by_input.get(str(box.get("file", "")))
        if out is None:
            right += 1  # not released: nothing of it left
            continue
        if out not in arrays:
            try:
                ds = pydicom.dcmread(deid / out)
                samples = int(ds.get("SamplesPerPixel", 1) or 1)
                overlay = _overlay_planes(ds)
                arrays[out] = (ds.pixel_array if "PixelData" in ds else None, samples, overlay)
            except Exception:  # noqa: BLE001 - an unreadable release cannot prove removal
                arrays[out] = (None, 1, {0x6000: None})
        array, samples, overlay = arrays[out]
        source = str(box.get("source", ""))
        if source.startswith("(60") and source.endswith(",3000)"):
            # Clean Graphics keeps a cleaned overlay: its glyph bits must be cleared
            group = int(source[1:5], 16)
            if group not in overlay:
                gone: bool | None = True
            else:
                planes = overlay[group]
                legible = (
                    None
                    if planes is None
                    else box_legible(planes, int(box.get("frame", 0)), box, 1)
                )
                gone = None if legible is None else not legible
        else:
            legible = (
                None
                if array is None
                else box_legible(array, int(box.get("frame", 0)), box, samples)
            )
            gone = None if legible is None else not legible
        if gone:
            right += 1
        else:
            leaks.append(
                {
                    "file": str(box.get("file", "")),
                    "path": str(box.get("source", "")),
                    "category": "burned_in",
                }
            )
    return {"right": right, "total": total, "share": right / total if total else 1.0}


def _overlay_planes(ds: Any) -> dict[int, Any]:
    """Released overlay groups and their bit planes as 0/1 (None: present but undecodable)."""
    from radguard.pixels.graphics import overlay_groups, read_overlay

    planes: dict[int, Any] = {}
    for group in overlay_groups(ds):
        try:
            planes[group] = read_overlay(ds, group).astype("uint8")
        except Exception:  # noqa: BLE001 - an overlay that cannot be read cannot prove removal
            planes[group] = None
    return planes


def _intervals(
    key: dict[str, Any], by_input: dict[str, str], outputs: dict[str, Scanned]
) -> dict[str, Any]:
    """Days between a patient's studies, before and after: preserved, changed, not released."""
    study_of_file = {f["file"]: f.get("study_instance_uid", "") for f in key.get("files", [])}
    released_study: dict[str, str] = {}  # original study UID -> released study date
    for source, study in study_of_file.items():
        out = by_input.get(source)
        if out is not None and out in outputs and outputs[out].study_date:
            released_study[study] = outputs[out].study_date
    preserved = changed = missing = 0
    for patient in key.get("patients", []):
        studies = patient.get("studies", [])
        expected = patient.get("intervals_days", [])
        dates = [released_study.get(s.get("study_instance_uid", "")) for s in studies]
        for index, days in enumerate(expected):
            a, b = dates[index], dates[index + 1] if index + 1 < len(dates) else None
            if not a or not b:
                missing += 1
                continue
            if (_day(b) - _day(a)).days == days:
                preserved += 1
            else:
                changed += 1
    total = preserved + changed
    return {
        "preserved": preserved,
        "changed": changed,
        "not_released": missing,
        "share": preserved / total if total else 1.0,
    }


def _day(text: str) -> Any:
    import datetime as dt

    return dt.datetime.strptime(text[:8], "%Y%m%d").date()
