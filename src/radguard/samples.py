"""A sample input set from the real DICOM files that pydicom ships (for the demo and tests)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pydicom
import pydicom.data

_NOT_DICOM = (".py", ".txt", ".json", ".gz", ".bz2", ".zip", ".xml", ".pyc", ".icc", ".dump")


def pydicom_files() -> list[Path]:
    """DICOM files bundled with pydicom, one per SOP instance (never downloads)."""
    data = Path(pydicom.data.__file__).parent
    files = []
    seen: set[str] = set()
    candidates = [
        *sorted((data / "test_files").rglob("*")),
        *sorted((data / "charset_files").glob("*")),
    ]
    for path in candidates:
        if not path.is_file() or path.suffix.lower() in _NOT_DICOM:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - skip what is not DICOM at all
            continue
        # pydicom ships one instance in many encodings: keep one file per SOP Instance UID
        uid = str(ds.get("SOPInstanceUID", "") or path.name)
        if uid in seen:
            continue
        seen.add(uid)
        files.append(path)
    return files


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
