"""``radguard deface IN OUT``: deface DICOM series and NIfTI files, with proof and renders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("deface")
@click.argument("input_path", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option(
    "--depth",
    type=float,
    default=4.0,
    show_default=True,
    help="Cut this many mm below the deepest facial feature.",
)
@click.option(
    "--brain-margin",
    type=float,
    default=3.0,
    show_default=True,
    help="Never cut within this many mm in front of the brain mask.",
)
@click.option(
    "--modality",
    type=click.Choice(["MR", "CT", "PT"]),
    default="MR",
    show_default=True,
    help="How to read NIfTI intensities (DICOM series say it themselves).",
)
@click.option("--ears", is_flag=True, help="Also clear both ears (pinnae), found by shape.")
@click.option("--workers", type=int, default=1, show_default=True, help="Volumes in parallel.")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="HTML report with renders (default: OUT.deface.html beside OUT).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per volume.")
def deface(
    input_path: Path,
    output_path: Path,
    depth: float,
    brain_margin: float,
    modality: str,
    ears: bool,
    workers: int,
    report: Path | None,
    as_json: bool,
) -> None:
    """Deface head CT, MR and PET (DICOM series folders, NIfTI files) and prove the face is
    gone. Exit 1 when any volume was refused (nothing is written for it)."""
    from radguard.deface import DefaceSettings, Status, check_models, deface_path, write_report
    from radguard.errors import RadguardError

    try:
        settings = DefaceSettings(depth_mm=depth, brain_margin_mm=brain_margin, ears=ears)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    check_models()
    if output_path.resolve() == input_path.resolve() or input_path.resolve() in (
        output_path.resolve().parents
    ):
        raise RadguardError("OUT must not be IN or inside it")
    results = deface_path(input_path, output_path, settings, modality, workers)
    report_path = report or output_path.parent / f"{output_path.name}.deface.html"
    write_report(results, report_path)
    output_path.mkdir(parents=True, exist_ok=True)
    (output_path.parent / f"{output_path.name}.deface.json").write_text(
        json.dumps([r.to_json() for r in results], indent=2) + "\n", encoding="utf-8"
    )
    refused = 0
    for result in results:
        refused += result.status is Status.REFUSED
        if as_json:
            click.echo(json.dumps(result.to_json()))
        else:
            click.echo(f"{result.status.value:8} {result.key}: {result.reason}")
    click.echo(f"{len(results)} volume(s); report {report_path}", err=True)
    if refused:
        sys.exit(1)
