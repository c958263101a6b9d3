"""Shared fixtures: real DICOM files shipped by pydicom, a key, a de-identified sample set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from radguard.deid import Engine, Keyring, Pseudonymizer
from radguard.settings import load_policy

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "dicom"
IN_CI = os.environ.get("CI") == "true"


def pydicom_file(name: str) -> Path:
    path = TEST_FILES / name
    assert path.is_file(), f"pydicom test file {name} missing"
    return path


def require_tool(name: str) -> str:
    """Path of an external tool; a missing tool fails under CI=true, skips elsewhere."""
    found = shutil.which(name)
    if found:
        return found
    if IN_CI:
        pytest.fail(f"{name} is required in CI (installed by .ci/run) but is missing")
    pytest.skip(f"{name} not installed")
    raise AssertionError  # unreachable


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's own default key."""
    monkeypatch.setenv("RADGUARD_HOME", str(tmp_path / "rghome"))


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(bytes(range(32)))


@pytest.fixture
def engine(keyring: Keyring) -> Engine:
    return Engine(load_policy("research"), Pseudonymizer(keyring))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    from radguard.deid.keys import new_key_file

    return new_key_file(tmp_path / "keys" / "pseudonym.key")
