"""The generated tables match their generators and the standard's data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from radguard.profile import Action, Option, load_iod_types, load_safe_private, load_table, resolve

from conftest import IN_CI, SHARED

ROOT = Path(__file__).resolve().parents[1]


def test_profile_table_is_up_to_date() -> None:
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED} (the standard's Table E.1-1 JSON) is missing in CI")
        pytest.skip("shared reference data not present")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_profile_table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_iod_types_are_up_to_date() -> None:
    pytest.importorskip("highdicom")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_iod_types.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_table_holds_both_editions() -> None:
    table = load_table()
    assert table.edition == "2026c"
    assert len(table.sources) == 2
    ids = table.by_id()
    assert len(ids) == 656  # 621 rows of the base table + 35 added by 2026c
    assert ids["00100010"].basic is Action.ZERO  # Patient's Name
    assert ids["0040b020"].edition == "2026c"  # Waveform Annotation Sequence
    assert ids["0040b020"].options[Option.CLEAN_GRAPHICS] is Action.CLEAN


def test_options_change_effective_actions() -> None:
    table = load_table()
    basic = table.effective([])
    research = table.effective([Option.RETAIN_LONGITUDINAL_MODIFIED_DATES, Option.RETAIN_UIDS])
    assert basic["00080020"][0] is Action.ZERO  # Study Date
    assert research["00080020"] == (Action.CLEAN, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    assert research["0020000d"] == (Action.KEEP, Option.RETAIN_UIDS)


def test_option_codes_and_parsing() -> None:
    assert Option.parse("113101") is Option.CLEAN_PIXEL_DATA
    assert Option.parse("retain-uids") is Option.RETAIN_UIDS
    assert {o.code for o in Option} == {str(c) for c in range(113101, 113113)}
    with pytest.raises(ValueError, match="unknown profile option"):
        Option.parse("retain-everything")


@pytest.mark.parametrize(
    ("code", "kind", "expected"),
    [
        (Action.REMOVE_OR_ZERO, "3", Action.REMOVE),
        (Action.REMOVE_OR_ZERO, "2", Action.ZERO),
        (Action.REMOVE_OR_ZERO, "-", Action.REMOVE),
        (Action.REMOVE_OR_DUMMY, "1", Action.DUMMY),
        (Action.ZERO_OR_DUMMY, "2C", Action.ZERO),
        (Action.ZERO_OR_DUMMY, "1", Action.DUMMY),
        (Action.REMOVE_ZERO_OR_DUMMY, "1C", Action.DUMMY),
        (Action.REMOVE_ZERO_OR_DUMMY, "?", Action.DUMMY),
        (Action.REMOVE_ZERO_OR_UID, "2", Action.UID),
        (Action.KEEP, "1", Action.KEEP),
    ],
)
def test_combined_codes_resolve_by_type(code: Action, kind: str, expected: Action) -> None:
    assert resolve(code, kind) is expected


def test_iod_types_know_common_objects() -> None:
    types = load_iod_types()
    ct = types.iod_for("1.2.840.10008.5.1.4.1.1.2")
    assert ct == "ct-image"
    assert types.type_of(ct, "00080023") == "2C"  # Content Date, Type 2C in the CT image IOD
    assert types.type_of(ct, "00081030") == "-"  # not a combined-code attribute
    assert types.type_of(None, "00080023") == "?"


def test_safe_private_dictionary() -> None:
    safe = load_safe_private()
    assert len(safe) > 100
    assert safe.is_safe("GEMS_ACQU_01", 0x0019, 0x23)  # Table Speed
    assert not safe.is_safe("GEMS_ACQU_01", 0x0019, 0x02)
    assert safe.extended([("ACME 1", 0x0029, 0x10)]).is_safe("acme 1", 0x0029, 0x10)
