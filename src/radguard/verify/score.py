"""Scoring a de-identified phantom set against its answer key (MIDI-B style).

For every planted item the key says whether it must go (``expect: remove``) or stay
(``expect: keep``); the score of a category is the share of required actions done right. An
item of a file that was not released counts as removed (nothing of it left) and, for items to
keep, as lost. Burned-in text is scored by the pixel stage once it exists; until then its
category reports itself as not run.
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
    return {
        "categories": categories,
        "leak_rate": 1
        - sum(v["right"] for v in removed) / max(1, sum(v["total"] for v in removed)),
        "research_kept": sum(v["right"] for v in kept) / max(1, sum(v["total"] for v in kept)),
        "leaks": leaks[:200],
        "burned_in": "not run: no pixel engine installed",
    }
