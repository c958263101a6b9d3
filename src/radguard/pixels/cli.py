"""``radguard pixels``: report burned-in text (``scan``) or run the pixel stage alone (``redact``).

Import-light: the OCR engine, OpenCV and NumPy load inside the commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from radguard.settings import PixelEngine, PixelScan, Policy, load_policy


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def _settings(policy: str | None, engine: str | None, scan_all: bool) -> Policy:
    loaded = load_policy(policy)
    pixels = loaded.pixels
    if engine is not None:
        pixels = replace(pixels, engine=PixelEngine(engine))
    if scan_all:
        pixels = replace(pixels, scan=PixelScan.ALL)
    return replace(loaded, pixels=pixels)


def _read(path: Path) -> Any:
    import pydicom

    from radguard.errors import DICOM_READ_ERRORS

    try:
        return pydicom.dcmread(path)
    except DICOM_READ_ERRORS:
        return None


_POLICY = click.option(
    "--policy", "policy", default=None, help="Built-in policy name or policy file ([pixels])."
)
_ENGINE = click.option(
    "--engine",
    type=click.Choice([e.value for e in PixelEngine]),
    default=None,
    help="OCR engine (default: the policy's pixels.engine).",
)
_ALL = click.option(
    "--all", "scan_all", is_flag=True, help="Read every image, not only those the triage selects."
)


@click.group()
def pixels() -> None:
    """Burned-in text: find it (scan) and remove what identifies (redact)."""


@pixels.command("scan")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@_POLICY
@_ENGINE
@_ALL
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
def scan(
    source: Path, policy: str | None, engine: str | None, scan_all: bool, as_json: bool
) -> None:
    """Report what text is found where in SOURCE (a file or folder); nothing is changed.

    Text judged identifying is shown masked; clinical labels are shown as read.
    """
    from radguard.pixels.clean import PixelCleaner, triage

    settings = _settings(policy, engine, scan_all)
    cleaner = PixelCleaner(settings.pixels)
    for path in _files(source):
        ds = _read(path)
        if ds is None or "PixelData" not in ds:
            continue
        reason = triage(ds, settings.pixels)
        record: dict[str, Any] = {"file": str(path), "triage": reason or "not selected"}
        if reason is not None:
            report = cleaner.scan(ds)
            record |= {
                "frames": report.frames,
                "lines": [f.public() for f in report.found],
                "layout_regions": report.layout_regions,
                "seconds": round(report.seconds, 3),
            }
        if as_json:
            click.echo(json.dumps(record))
            continue
        click.echo(f"{path}: {record['triage']}")
        for line in record.get("lines", []):
            action = "REDACT" if line["redacted"] else "keep"
            click.echo(
                f"  frame {line['frame']:>3} {line['box']} {action:<6} {line['verdict']:<11} "
                f"{line['text']!r} ({line['why']})"
            )


@pixels.command("redact")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@_POLICY
@_ENGINE
@_ALL
def redact(
    source: Path, target: Path, policy: str | None, engine: str | None, scan_all: bool
) -> None:
    """Run the pixel stage alone: redact identifying text of SOURCE into TARGET.

    The header is left as it is (except Burned In Annotation NO and the Clean Pixel Data code
    after a successful re-read); a file still carrying identifying text is not written and
    the exit code is 1.
    """
    from radguard.errors import Rejected
    from radguard.pixels.clean import PixelCleaner, triage

    settings = _settings(policy, engine, scan_all)
    cleaner = PixelCleaner(settings.pixels)
    refused = 0
    for path in _files(source):
        ds = _read(path)
        if ds is None:
            continue
        relative = path.name if source.is_file() else path.relative_to(source)
        out = target if source.is_file() and target.suffix else target / relative
        if "PixelData" in ds and triage(ds, settings.pixels) is not None:
            try:
                report = cleaner.clean(ds)
            except Rejected as rejection:
                refused += 1
                click.echo(f"{path}: refused: {rejection.reason}", err=True)
                continue
            click.echo(f"{path}: {report.summary()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out, enforce_file_format=True)
    sys.exit(1 if refused else 0)
