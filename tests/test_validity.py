"""Outputs are valid DICOM: dciodvfy (dicom3tools) finds no error the engine introduced."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from radguard.deid import Engine, Keyring, Pseudonymizer
from radguard.settings import load_policy

from conftest import pydicom_file, require_tool

pytestmark = pytest.mark.integration

FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "test-SR.dcm",
    "JPEG2000.dcm",
    "examples_rgb_color.dcm",
    "waveform_ecg.dcm",
    "rtdose.dcm",
    "reportsi.dcm",
    "SC_rgb_rle.dcm",
    "examples_overlay.dcm",
]


def _errors(tool: str, path: Path) -> set[str]:
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    errors = set()
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("Error"):
            # Normalize away values so the same problem matches before and after.
            text = re.sub(r"\[[^\]]*\]|\b\d[\d.]*\b", "#", line)
            errors.add(text)
    return errors


@pytest.mark.parametrize("policy", ["basic", "research", "safe-harbor"])
@pytest.mark.parametrize("name", FILES)
def test_no_new_validation_errors(name: str, policy: str, tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    source = pydicom_file(name)
    ds = pydicom.dcmread(source, force=True)
    Engine(load_policy(policy), Pseudonymizer(Keyring(b"\x05" * 32))).apply(ds)
    out = tmp_path / "out.dcm"
    ds.save_as(out, enforce_file_format=True)
    introduced = _errors(tool, out) - _errors(tool, source)
    assert not introduced, "\n".join(sorted(introduced))
