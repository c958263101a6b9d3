#!/usr/bin/env python3
"""Generate radguard's PS3.15 Table E.1-1 from the standard's JSON extracts.

Reads every ``ps3.15-table-E.1-1*.json`` in the shared reference folder (the base table and
edition additions; the newest edition wins for a row present in both) and writes
``src/radguard/profile/table_e11.json`` with the edition and each input's sha256 in its header.

Rows added by a later edition carry only the basic-profile action. Their option columns follow
the pattern of an analogous row of the base table, named below (``_ANALOGUES``), so the choice is
visible and reviewable rather than guessed at run time.

Usage: python scripts/gen_profile_table.py [--shared DIR] [--out FILE] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

from _generated import write_or_check

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "dicom"
DEFAULT_OUT = ROOT / "src" / "radguard" / "profile" / "table_e11.json"

OPTION_COLUMNS = (
    "rtnSafePrivOpt",
    "rtnUIDsOpt",
    "rtnDevIdOpt",
    "rtnInstIdOpt",
    "rtnPatCharsOpt",
    "rtnLongFullDatesOpt",
    "rtnLongModifDatesOpt",
    "cleanDescOpt",
    "cleanStructContOpt",
    "cleanGraphOpt",
)
CODES = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
BASE_EDITION = "2025a"

# Added row id -> id of the base-table row whose option columns it follows.
_ANALOGUES: dict[str, str | None] = {
    "00700006": "00700001",  # Unformatted Text Value ~ Graphic Annotation Sequence (graphics)
    "00400556": "00184000",  # Acquisition Context Description ~ Acquisition Comments
    "0040b034": "0040a120",  # Annotation DateTime ~ DateTime
    "003a020c": "00184000",  # Channel Derivation Description ~ Acquisition Comments
    "003a0203": "30100035",  # Channel Label ~ Entity Label
    "0040e012": None,  # Display URI: no option retains it
    "0040a034": "0040a120",  # Effective Start DateTime ~ DateTime
    "0040a035": "0040a120",  # Effective Stop DateTime ~ DateTime
    "00102161": "00102160",  # Ethnic Group Code Sequence ~ Ethnic Group
    "00102162": "00102160",  # Ethnic Groups ~ Ethnic Group
    "00100044": None,  # Gender Identity Code Sequence: not a retained characteristic
    "00100045": None,  # Gender Identity Comment
    "00100041": None,  # Gender Identity Sequence
    "00181011": "00203401",  # Hardcopy Creation Device ID ~ Modifying Device ID
    "00081304": "00081084",  # Histological Diagnoses Code Sequence ~ Admitting Diagnoses Code Seq
    "0040b03f": "30100035",  # Montage Channel Label ~ Entity Label
    "0040b03b": "30100036",  # Montage Name ~ Entity Name
    "003a0020": "30100035",  # Multiplex Group Label ~ Entity Label
    "00100012": None,  # Name to Use: a person's name
    "00100013": None,  # Name to Use Comment
    "00100011": None,  # Person Names to Use Sequence
    "00081302": "00081084",  # Primary Diagnosis Code Sequence ~ Admitting Diagnoses Code Sequence
    "00081301": "00081084",  # Principal Diagnosis Code Sequence ~ Admitting Diagnoses Code Seq
    "00100015": None,  # Pronoun Code Sequence
    "00100016": None,  # Pronoun Comment
    "00181010": "00203401",  # Secondary Capture Device ID ~ Modifying Device ID
    "00081303": "00081084",  # Secondary Diagnoses Code Sequence ~ Admitting Diagnoses Code Seq
    "0040b036": "0040a120",  # Segment Definition DateTime ~ DateTime
    "00100046": "00100040",  # Sex Parameters for Clinical Use Category Code Seq ~ Patient's Sex
    "00100042": "00104000",  # Sex Parameters for Clinical Use Category Comment ~ Patient Comments
    "00100047": None,  # Sex Parameters for Clinical Use Category Reference (a URI)
    "00100043": "00100040",  # Sex Parameters for Clinical Use Category Sequence ~ Patient's Sex
    "00100014": None,  # Third Person Pronouns Sequence
    "300a0054": "00080017",  # Table Top Position Alignment UID ~ Acquisition UID
    "0040b020": "00700001",  # Waveform Annotation Sequence ~ Graphic Annotation Sequence
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edition(path: Path) -> str:
    match = re.search(r"-(\d{4}[a-e])-additions", path.name)
    return match.group(1) if match else BASE_EDITION


def _keyword_and_vr(row_id: str) -> tuple[str, str]:
    if not re.fullmatch(r"[0-9a-f]{8}", row_id):
        return "", ""
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    tag = int(row_id, 16)
    try:
        return keyword_for_tag(tag) or "", dictionary_VR(tag)
    except KeyError:
        return "", ""


def build(shared: Path) -> dict[str, object]:
    """Merge every edition of Table E.1-1 found in ``shared`` into one table."""
    sources = sorted(shared.glob("ps3.15-table-E.1-1*.json"), key=_edition)
    if not sources:
        raise SystemExit(f"no ps3.15-table-E.1-1*.json under {shared}")
    rows: dict[str, dict[str, object]] = {}
    base_rows: dict[str, dict[str, str]] = {}
    for source in sources:
        edition = _edition(source)
        for raw in json.loads(source.read_text()):
            row_id = raw["id"].lower()
            basic = raw["basicProfile"]
            options = {c: raw[c] for c in OPTION_COLUMNS if c in raw}
            if edition == BASE_EDITION:
                base_rows[row_id] = options
                origin = "table"
            else:
                if row_id not in _ANALOGUES:
                    raise SystemExit(f"{source.name}: row {row_id} has no analogue in _ANALOGUES")
                like = _ANALOGUES[row_id]
                options = dict(base_rows[like]) if like else {}
                origin = f"options follow row {like}" if like else "basic profile only"
            for code in (basic, *options.values()):
                if code not in CODES:
                    raise SystemExit(f"{source.name}: row {row_id}: unknown action {code!r}")
            keyword, vr = _keyword_and_vr(row_id)
            rows[row_id] = {
                "id": row_id,
                "tag": raw["tag"].upper(),
                "name": raw["name"],
                "keyword": keyword,
                "vr": vr,
                "in_std_comp_iod": raw.get("stdCompIOD", "N") == "Y",
                "basic": basic,
                "options": options,
                "edition": edition,
                "origin": origin,
            }
    return {
        "title": "PS3.15 Table E.1-1 Application Level Confidentiality Profile Attributes",
        "edition": max(_edition(s) for s in sources),
        "generated_by": "scripts/gen_profile_table.py",
        "sources": [
            {"file": s.name, "edition": _edition(s), "sha256": _sha256(s)} for s in sources
        ],
        "rows": [rows[k] for k in sorted(rows)],
    }


def render(table: dict[str, object]) -> str:
    return json.dumps(table, indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if --out is not up to date")
    args = parser.parse_args(argv)
    return write_or_check(
        args.out, render(build(args.shared)), "scripts/gen_profile_table.py", args.check
    )


if __name__ == "__main__":
    sys.exit(main())
