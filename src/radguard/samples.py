"""A sample input set from the real DICOM files that pydicom ships (for the demo and tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pydicom.data


def pydicom_files() -> list[Path]:
    """Every DICOM file bundled with pydicom (DICOM files only; never downloads)."""
    root = Path(pydicom.data.__file__).parent / "test_files"
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() in (
            ".py",
            ".txt",
            ".json",
            ".gz",
            ".bz2",
            ".zip",
            ".xml",
            ".pyc",
        ):
            continue
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        files.append(path)
    return sorted(files)


def build_sample_set(out: Path) -> int:
    """Copy pydicom's files into a hospital-like tree: nested folders, names without suffixes."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, path in enumerate(pydicom_files()):
        folder = out / f"batch{index % 4}" / f"case{index:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = path.stem.upper() if index % 3 == 0 else path.name  # some without suffix
        shutil.copyfile(path, folder / name)
        count += 1
    return count
