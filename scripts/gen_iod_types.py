#!/usr/bin/env python3
"""Generate the IOD attribute-type table the combined action codes need.

Table E.1-1's combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) resolve by the attribute's type
(1, 1C, 2, 2C, 3) in the object's IOD. highdicom ships the standard's SOP-class-to-IOD,
IOD-to-module and module-to-attribute tables as package data; this script keeps only what
radguard needs (attributes whose basic-profile action is combined, at any sequence depth) and
writes ``src/radguard/profile/iod_types.json``: for each IOD, tag path -> strictest type.

Usage: python scripts/gen_iod_types.py [--check]   (needs highdicom, a dev dependency)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata, resources
from pathlib import Path

from _generated import write_or_check

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "radguard" / "profile" / "table_e11.json"
OUT = ROOT / "src" / "radguard" / "profile" / "iod_types.json"
_STRICTNESS = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


def _load(name: str) -> object:
    return json.loads(resources.files("highdicom").joinpath("_standard", name).read_text())


def build() -> dict[str, object]:
    from pydicom.datadict import tag_for_keyword

    table = json.loads(TABLE.read_text())
    combined = {
        row["id"]
        for row in table["rows"]
        if "/" in row["basic"] or any("/" in a for a in row["options"].values())
    }
    sop_iod: dict[str, str] = _load("sop_class_iod_map.json")  # type: ignore[assignment]
    iod_modules: dict[str, list[dict[str, str]]] = _load("iod_module_map.json")  # type: ignore[assignment]
    module_attrs: dict[str, list[dict[str, object]]] = _load("module_attribute_map.json")  # type: ignore[assignment]

    def tag_hex(keyword: str) -> str | None:
        tag = tag_for_keyword(keyword)
        return None if tag is None else f"{tag:08x}"

    iods: dict[str, dict[str, str]] = {}
    for iod, modules in sorted(iod_modules.items()):
        types: dict[str, str] = {}
        for module in modules:
            for attr in module_attrs.get(module["key"], []):
                leaf = tag_hex(str(attr["keyword"]))
                if leaf is None or leaf not in combined:
                    continue
                parts = [tag_hex(str(k)) for k in attr["path"]]  # type: ignore[attr-defined]
                if any(p is None for p in parts):
                    continue
                path = "/".join([*(p for p in parts if p), leaf])
                kind = str(attr["type"])
                # A conditional or user-optional module cannot make an attribute stricter
                # than the module's presence requires; the attribute's own type is kept.
                if path not in types or _STRICTNESS[kind] < _STRICTNESS[types[path]]:
                    types[path] = kind
        iods[iod] = dict(sorted(types.items()))
    digest = hashlib.sha256()
    for name in ("sop_class_iod_map.json", "iod_module_map.json", "module_attribute_map.json"):
        digest.update(resources.files("highdicom").joinpath("_standard", name).read_bytes())
    return {
        "title": "Attribute types of Table E.1-1 combined-action attributes, per IOD",
        "source": f"highdicom {metadata.version('highdicom')} _standard tables",
        "source_sha256": digest.hexdigest(),
        "generated_by": "scripts/gen_iod_types.py",
        "sop_classes": dict(sorted(sop_iod.items())),
        "iods": iods,
    }


def render(data: dict[str, object]) -> str:
    return json.dumps(data, indent=0, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is not up to date")
    args = parser.parse_args(argv)
    return write_or_check(OUT, render(build()), "scripts/gen_iod_types.py", args.check)


if __name__ == "__main__":
    sys.exit(main())
