"""Signed release manifests: ``OUT/radguard-release.json`` and ``OUT/radguard-release.sig``.

The manifest lists every released file with its sha256 and a hash of its decoded pixels and
geometry, so a re-encoded but unaltered image still verifies while any changed pixel does not.
The signature file holds the release key's signature over the manifest's exact bytes.
``verify_release`` reports every added, removed or modified file, and for a modified image
whether its pixels or only its header changed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard import __version__
from radguard.errors import RadguardError
from radguard.govern.keys import (
    Algorithm,
    Signer,
    algorithm_of,
    key_id_of,
    load_public,
    verify_signature,
)

MANIFEST = "radguard-release.json"
SIGNATURE = "radguard-release.sig"
FORMAT = "radguard-release/1"
# Geometry that gives pixels their meaning: a change here is a change of the image.
_GEOMETRY = (
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsStored",
    "PixelRepresentation",
    "PlanarConfiguration",
    "PixelSpacing",
    "SliceThickness",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "RescaleSlope",
    "RescaleIntercept",
)


@dataclass
class ReleaseCheck:
    """Outcome of ``verify_release``."""

    signature_valid: bool
    key_id: str = ""
    key_trusted: bool | None = None
    files: int = 0
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    pixels_changed: list[str] = field(default_factory=list)
    header_changed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)  # not an image, or pixels unreadable
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.signature_valid
            and self.key_trusted is not False
            and not (self.added or self.removed or self.pixels_changed)
            and not (self.header_changed or self.modified or self.problems)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "signature_valid": self.signature_valid,
            "key_id": self.key_id,
            "key_trusted": self.key_trusted,
            "files": self.files,
            "added": self.added,
            "removed": self.removed,
            "pixels_changed": self.pixels_changed,
            "header_changed": self.header_changed,
            "modified": self.modified,
            "problems": self.problems,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pixel_hash(path: Path) -> str | None:
    """sha256 over the geometry and the decoded pixel array; None when there are no pixels.

    Raises ``RadguardError`` when the pixel data cannot be decoded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decoder warnings quote values
        return _pixel_hash(path)


def _pixel_hash(path: Path) -> str | None:
    import numpy as np
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as error:
        raise RadguardError(
            f"{path.name}: not readable as DICOM ({type(error).__name__})"
        ) from error
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return None
    try:
        array = np.ascontiguousarray(ds.pixel_array)
    except Exception as error:
        raise RadguardError(
            f"{path.name}: pixel data cannot be decoded ({type(error).__name__})"
        ) from error
    geometry = {k: str(ds.get(k, "")) for k in _GEOMETRY}
    # Photometric interpretation as decoded: YBR stored data decodes to its own values
    geometry["PhotometricInterpretation"] = str(ds.get("PhotometricInterpretation", ""))
    header = {
        "geometry": geometry,
        "dtype": array.dtype.newbyteorder("<").str,
        "shape": list(array.shape),
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode() + b"\x00")
    digest.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.hexdigest()


def _released_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(".rg-") or (Path(folder) == root and name in (MANIFEST, SIGNATURE)):
                continue
            yield Path(folder) / name


def describe_file(path: Path, root: Path) -> dict[str, Any]:
    """One manifest line: relative path, size, sha256 and the pixel hash."""
    entry: dict[str, Any] = {
        "path": path.relative_to(root).as_posix(),
        "size": path.stat().st_size,
        "sha256": file_sha256(path),
    }
    try:
        entry["pixels"] = pixel_hash(path)
    except RadguardError as error:
        entry["pixels"] = None
        entry["pixels_note"] = str(error).split(": ", 1)[-1]
    return entry


def build_manifest(
    root: Path,
    *,
    recipient: dict[str, str] | None = None,
    purpose: str = "",
    agreement: str = "",
    legal_basis: str = "",
    extra: dict[str, Any] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Describe every file under ``root`` (not yet signed)."""
    paths = list(_released_files(root))
    if workers > 1 and len(paths) > 8:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            files = list(pool.map(describe_file, paths, [root] * len(paths), chunksize=16))
    else:
        files = [describe_file(p, root) for p in paths]
    return {
        "format": FORMAT,
        "release_id": str(uuid.uuid4()),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "radguard_version": __version__,
        "recipient": recipient or {},
        "purpose": purpose,
        "agreement": agreement,
        "legal_basis": legal_basis,
        "files": files,
        **(extra or {}),
    }


def write_release(root: Path, manifest: dict[str, Any], signer: Signer) -> str:
    """Write the manifest and its detached signature; returns the manifest's sha256."""
    public = (signer.certificate_pem or signer.public_pem).decode()
    manifest = {
        **manifest,
        "signer": {  # pins the exact key text of the signature file under the signature
            "key_id": signer.key_id,
            "algorithm": signer.algorithm.value,
            "public_key_sha256": hashlib.sha256(public.encode()).hexdigest(),
        },
    }
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    signature = {
        "format": FORMAT,
        "key_id": signer.key_id,
        "algorithm": signer.algorithm.value,
        "public_key": public,
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(signer.sign(data)).decode(),
    }
    _atomic(root / MANIFEST, data)
    _atomic(root / SIGNATURE, (json.dumps(signature, indent=1) + "\n").encode())
    return hashlib.sha256(data).hexdigest()


def sign_release(
    root: Path,
    signer: Signer,
    *,
    recipient: dict[str, str] | None = None,
    purpose: str = "",
    agreement: str = "",
    legal_basis: str = "",
    extra: dict[str, Any] | None = None,
    workers: int = 1,
) -> tuple[dict[str, Any], str]:
    """Build, sign and write the manifest of ``root``; returns (manifest, its sha256)."""
    manifest = build_manifest(
        root,
        recipient=recipient,
        purpose=purpose,
        agreement=agreement,
        legal_basis=legal_basis,
        extra=extra,
        workers=workers,
    )
    return manifest, write_release(root, manifest, signer)


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def check_signature(
    root: Path, trusted: dict[str, bytes] | None = None
) -> tuple[ReleaseCheck, dict[str, Any] | None]:
    """Check the manifest signature; returns the check and the manifest when it parses."""
    check = ReleaseCheck(signature_valid=False)
    try:
        data = (root / MANIFEST).read_bytes()
        sig = json.loads((root / SIGNATURE).read_text())
        signature = base64.b64decode(sig["signature"], validate=True)
        public = str(sig["public_key"]).encode()
        check.key_id = str(sig.get("key_id", ""))
    except (OSError, ValueError, KeyError, TypeError) as error:
        check.problems.append(
            f"manifest or signature missing or unreadable ({type(error).__name__})"
        )
        return check, None
    try:
        actual_id = key_id_of(load_public(public))
    except RadguardError:
        check.problems.append("the signature file's public key is unreadable")
        return check, None
    if actual_id != check.key_id:
        check.problems.append("the signature file's key id does not match its public key")
    if sig.get("format") != FORMAT:
        check.problems.append(f"unknown signature format {sig.get('format')!r}")
    if sig.get("manifest_sha256") != hashlib.sha256(data).hexdigest():
        check.problems.append("the manifest digest in the signature file does not match")
    try:
        if Algorithm(sig.get("algorithm")) is not algorithm_of(load_public(public)):
            check.problems.append("the signature file names another algorithm than its key's")
    except ValueError:
        check.problems.append(f"unknown signature algorithm {sig.get('algorithm')!r}")
    check.signature_valid = verify_signature(public, data, signature)
    if not check.signature_valid:
        check.problems.append(
            "the manifest signature does not verify (manifest or signature altered)"
        )
    if trusted is not None:
        pem = trusted.get(actual_id)
        check.key_trusted = pem is not None and key_id_of(load_public(pem)) == actual_id
        if not check.key_trusted:
            check.problems.append(
                f"signed with key {actual_id}, which is not a trusted release key"
            )
    try:
        manifest = json.loads(data)
        pinned = manifest["signer"]
    except (ValueError, KeyError, TypeError):
        check.problems.append("the manifest is not valid JSON or names no signer")
        return check, None
    if pinned.get("public_key_sha256") != hashlib.sha256(public).hexdigest():
        check.problems.append("the signature file's key or certificate was altered")
    if pinned.get("key_id") != actual_id:
        check.problems.append("the manifest names another signing key")
    return check, manifest


def verify_release(root: Path, trusted: dict[str, bytes] | None = None) -> ReleaseCheck:
    """Check signature and every file; classify each difference."""
    check, manifest = check_signature(root, trusted)
    if manifest is None:
        return check
    try:
        listed = {str(f["path"]): f for f in manifest.get("files", [])}
    except (KeyError, TypeError, AttributeError):
        check.problems.append("the manifest's file list is malformed")
        return check
    present = {p.relative_to(root).as_posix(): p for p in _released_files(root)}
    check.files = len(listed)
    check.added = sorted(set(present) - set(listed))
    check.removed = sorted(set(listed) - set(present))
    for name in sorted(set(listed) & set(present)):
        classify(listed[name], present[name], check)
    return check


def classify(entry: dict[str, Any], path: Path, check: ReleaseCheck) -> None:
    """Compare one file with its manifest line; record what changed (if anything)."""
    name = entry["path"]
    if path.stat().st_size == entry.get("size") and file_sha256(path) == entry.get("sha256"):
        return
    expected = entry.get("pixels")
    if expected is None:
        check.modified.append(name)
        return
    try:
        actual = pixel_hash(path)
    except RadguardError:
        check.pixels_changed.append(name)  # pixels no longer decode: treat as changed
        return
    (check.header_changed if actual == expected else check.pixels_changed).append(name)
