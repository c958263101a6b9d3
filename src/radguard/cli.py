"""The radguard command line: a thin layer that parses, builds settings and calls the library.

Exit codes: 0 every input released or deliberately excluded; 1 any input quarantined or failed
(or, for checks, a finding); 2 usage, policy or key errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from radguard import __version__
from radguard.errors import KeyFileError, PolicyError, RadguardError
from radguard.profile.options import Option
from radguard.settings import Policy, load_policy

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
_OPTION_NAMES = [o.value for o in Option]


def _console() -> Console:
    return Console(stderr=True, soft_wrap=True)


class _Group(click.Group):
    """Maps radguard's expected errors to exit codes without tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PolicyError as error:
            _console().print(f"[red]policy error[/red] {error}", markup=True, highlight=False)
            sys.exit(EXIT_USAGE)
        except KeyFileError as error:
            _console().print(f"[red]key error[/red] {error}", highlight=False)
            sys.exit(EXIT_USAGE)
        except RadguardError as error:
            _console().print(f"[red]error[/red] {error}", highlight=False)
            sys.exit(EXIT_USAGE)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="radguard")
def main() -> None:
    """radguard: de-identify DICOM for research and AI, prove it, and govern every release."""


def _policy(policy: str | None, add: tuple[str, ...], drop: tuple[str, ...]) -> Policy:
    base = load_policy(policy)
    try:
        return base.with_options([Option.parse(a) for a in add], [Option.parse(d) for d in drop])
    except ValueError as error:
        raise PolicyError("command line", [str(error)]) from error


def _keyring(key_file: Path | None) -> Any:
    from radguard.deid.keys import load_key, load_or_create_default

    if key_file is not None:
        return load_key(key_file)
    keyring, path, created = load_or_create_default()
    if created:
        _console().print(
            f"[yellow]notice[/yellow] created your default pseudonym key at {path} "
            "(mode 0600). Back it up: without it pseudonyms cannot be reproduced."
        )
    return keyring


_policy_option = click.option(
    "--policy",
    "policy_spec",
    metavar="NAME|FILE",
    default=None,
    help="Built-in policy (basic, research, safe-harbor) or a policy file. Default: research.",
)
_add_option = click.option(
    "--option",
    "add",
    multiple=True,
    metavar="NAME",
    help="Add a profile option (name or CID 7050 code); repeatable.",
)
_drop_option = click.option(
    "--no-option",
    "drop",
    multiple=True,
    metavar="NAME",
    help="Drop a profile option from the policy's set; repeatable.",
)
_key_option = click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Pseudonym key file (default: your own key, created once).",
)


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@_policy_option
@_add_option
@_drop_option
@_key_option
@click.option("--workers", type=int, default=0, help="Worker processes (default: all cores).")
@click.option(
    "--quarantine",
    is_flag=True,
    help="Copy originals that were not released to OUT.run/quarantine (mode 0700).",
)
@click.option("--dry-run", is_flag=True, help="Write nothing; report what would happen.")
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    help="Where the per-file work runs.",
)
@click.option(
    "--scheduler",
    default="",
    metavar="ADDRESS",
    help="Dask scheduler address (with --executor dask).",
)
@click.option(
    "--max-risk",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    metavar="P",
    help="Withhold the whole set if its prosecutor re-identification "
    "risk is above P (overrides the policy's [risk] limit).",
)
@click.option(
    "--purpose",
    type=click.Choice(["ai-training", "research", "quality-improvement", "commercial"]),
    default=None,
    help="Enforce the consent registry for this purpose before any pixel is processed.",
)
@click.option(
    "--require-consent",
    is_flag=True,
    help="With --purpose: release only patients who permitted it (opt-in).",
)
@click.option(
    "--consent-registry",
    type=click.Path(path_type=Path),
    default=None,
    help="Consent registry file (default: $RADGUARD_HOME/consent.sqlite).",
)
@click.option(
    "--release-to",
    default="",
    metavar="NAME",
    help="Recipient: sign the release and record it in the disclosure ledger.",
)
@click.option("--release-address", default="", help="Recipient address (for the accounting).")
@click.option("--agreement", default="", metavar="REF", help="Data-use agreement reference.")
@click.option("--legal-basis", default="", help="Legal basis recorded in the ledger.")
@click.option(
    "--ledger",
    "ledger_url",
    default="",
    metavar="PATH|URL",
    help="Disclosure ledger: SQLite file or postgresql://... (default: the site ledger).",
)
@click.option(
    "--sign",
    is_flag=True,
    help="Write the signed release manifest (OUT/radguard-release.json, .sig).",
)
@click.option(
    "--sign-dicom",
    is_flag=True,
    help="Also add a PS3.15 Annex C digital signature to every released file.",
)
def deid(
    input_path: Path,
    output_path: Path,
    policy_spec: str | None,
    add: tuple[str, ...],
    drop: tuple[str, ...],
    key_file: Path | None,
    workers: int,
    quarantine: bool,
    dry_run: bool,
    executor: str,
    scheduler: str,
    max_risk: float | None,
    purpose: str | None,
    require_consent: bool,
    consent_registry: Path | None,
    release_to: str,
    release_address: str,
    agreement: str,
    legal_basis: str,
    ledger_url: str,
    sign: bool,
    sign_dicom: bool,
) -> None:
    """De-identify every DICOM file under IN into OUT/<patient>/<study>/<series>/<sop>.dcm.

    Run records (manifest.jsonl, summary.json, the encrypted vault, quarantine/) go to OUT.run
    beside OUT. A run that was interrupted resumes when started again with the same arguments.

    \b
    Exit codes:
      0  every input released, or excluded on purpose (policy, unsafe object type)
      1  any input quarantined or failed (reasons in OUT.run/manifest.jsonl)
      2  usage, policy or key error
    """
    from radguard.pipeline import RunOptions, run_deid

    policy = _policy(policy_spec, add, drop)
    keyring = _keyring(key_file)
    opts = RunOptions(
        input_path,
        output_path,
        workers,
        quarantine,
        dry_run,
        executor,
        scheduler,
        max_risk=max_risk,
        purpose=purpose or "",
        require_consent=require_consent,
        consent_registry=str(consent_registry or ""),
        release_to=release_to,
        release_address=release_address,
        agreement=agreement,
        legal_basis=legal_basis,
        ledger=ledger_url,
        sign=sign,
        sign_dicom=sign_dicom,
    )
    if require_consent and not purpose:
        raise click.UsageError("--require-consent needs --purpose")
    console = _console()
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]de-identifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("deid", total=None, status="")

        def tick(result: Any) -> None:
            progress.update(task, advance=1, status=result.status)

        summary = run_deid(opts, policy, keyring, on_progress=tick)
    _print_summary(console, summary, output_path)
    sys.exit(summary.exit_code)


def _print_summary(console: Console, summary: Any, output_path: Path) -> None:
    table = Table(
        title="radguard deid" + (" (dry run: nothing written)" if summary.dry_run else ""),
        show_header=True,
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("files read", str(summary.files_read))
    for status in ("released", "excluded", "quarantined", "failed", "withheld"):
        if status != "withheld" or summary.counts.get(status):
            table.add_row(status, str(summary.counts.get(status, 0)))
    if summary.resumed:
        table.add_row("done in an earlier run", str(summary.resumed))
    for modality, count in sorted(summary.per_modality.items()):
        table.add_row(f"  released {modality}", str(count))
    table.add_row("throughput", f"{summary.files_per_second} files/s")
    table.add_row("policy", f"{summary.policy} ({summary.policy_sha256[:12]})")
    table.add_row("key fingerprint", summary.key_fingerprint)
    signatures = getattr(summary, "input_signatures", {})
    if signatures:
        table.add_row(
            "input signatures",
            f"{signatures.get('valid', 0)} valid, {signatures.get('invalid', 0)} invalid",
        )
    release = getattr(summary, "release", {})
    if release.get("manifest_sha256"):
        table.add_row("release manifest", f"signed, sha256 {release['manifest_sha256'][:16]}")
    if "ledger_index" in release:
        table.add_row(
            "ledger entry", f"{release['ledger_index']} (log size {release['ledger_size']})"
        )
    console.print(table)
    if not summary.dry_run:
        from radguard.pipeline import run_dir_for

        console.print(f"run records: {run_dir_for(output_path)}", highlight=False)
    if summary.withheld:
        console.print(
            f"[red]set withheld[/red]: prosecutor risk "
            f"{summary.risk.get('prosecutor_risk')} is above the limit; nothing was "
            f"released (moved to {summary.withheld}). Try 'radguard risk' for "
            "generalizations that lower it."
        )
    if summary.exit_code:
        console.print(
            "[red]some inputs were not released[/red]: see manifest.jsonl for the reasons (exit 1)"
        )


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_policy_option
@_add_option
@_drop_option
@_key_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def explain(
    file: Path,
    policy_spec: str | None,
    add: tuple[str, ...],
    drop: tuple[str, ...],
    key_file: Path | None,
    as_json: bool,
) -> None:
    """Show, for one file, every attribute's original (masked), action, rule and result."""

    from radguard.deid import Engine, Pseudonymizer

    policy = _policy(policy_spec, add, drop)
    engine = Engine(policy, Pseudonymizer(_keyring(key_file)))
    from radguard.errors import Rejected
    from radguard.pipeline.stages import Item, read_stage

    try:
        ds = read_stage(Item(file, "")).dataset
    except Rejected as error:
        raise RadguardError(f"{file}: {error.reason}") from error
    assert ds is not None
    outcome = engine.apply(ds, trace=True)
    if as_json:
        from dataclasses import asdict

        for line in outcome.trace or []:
            click.echo(json.dumps(asdict(line)))
        return
    table = Table(title=f"{file.name}: policy {policy.name}")
    for column in ("tag path", "attribute", "original (masked)", "action", "rule", "result"):
        table.add_column(column, overflow="fold")
    for line in outcome.trace or []:
        table.add_row(line.path, line.name, line.original, line.action, line.rule, line.result)
    Console().print(table)
    for note in outcome.notes:
        Console().print(f"note: {note}", highlight=False)


@main.group()
def profile() -> None:
    """The PS3.15 Table E.1-1 profile and its options."""


@profile.command("show")
@_policy_option
@_add_option
@_drop_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def profile_show(
    policy_spec: str | None, add: tuple[str, ...], drop: tuple[str, ...], as_json: bool
) -> None:
    """The effective action for every attribute of Table E.1-1 under the chosen options."""
    from radguard.profile import load_table

    policy = _policy(policy_spec or "basic", add, drop)
    table = load_table()
    rows = []
    for row in table:
        action, option = row.action(policy.options)
        rows.append(
            {
                "tag": row.tag,
                "name": row.name,
                "basic": row.basic.value,
                "action": action.value,
                "by": option.value if option else "basic",
            }
        )
    if as_json:
        click.echo(
            json.dumps(
                {"edition": table.edition, "options": policy.option_names, "rows": rows}, indent=1
            )
        )
        return
    out = Table(
        title=f"PS3.15 Table E.1-1 ({table.edition}), options: "
        f"{', '.join(policy.option_names) or 'none'}"
    )
    for column in ("tag", "attribute", "basic", "effective", "set by"):
        out.add_column(column)
    for r in rows:
        out.add_row(r["tag"], r["name"], r["basic"], r["action"], r["by"])
    Console().print(out)


@main.group()
def policy() -> None:
    """Policy files."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def policy_check(file: Path) -> None:
    """Validate a policy file and explain every error (exit 2 when invalid)."""
    from radguard.settings import check_policy

    problems = check_policy(file)
    if problems:
        _console().print(f"[red]{file}: {len(problems)} problem(s)[/red]")
        for problem in problems:
            _console().print(f"  - {problem}", highlight=False)
        sys.exit(EXIT_USAGE)
    loaded = load_policy(file)
    click.echo(
        f"{file}: valid; options: {', '.join(loaded.option_names) or 'none'}; "
        f"sha256 {loaded.sha256[:16]}"
    )


@main.group()
def key() -> None:
    """Keys: pseudonym, ledger and release (never printed: only fingerprints, public keys)."""


_kind_option = click.option(
    "--kind",
    type=click.Choice(["pseudonym", "ledger", "release"]),
    default="pseudonym",
    help="pseudonym (HMAC key), ledger (Ed25519, signs tree heads) or release "
    "(ECDSA/RSA with an X.509 certificate, signs manifests and DICOM files).",
)


@key.command("new")
@_kind_option
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Pseudonym keys: where to write it (mode 0600; never overwritten). "
    "Default: your default key path.",
)
@click.option(
    "--algorithm",
    type=click.Choice(["ecdsa-p256-sha256", "rsa-pkcs1v15-sha256", "ed25519"]),
    default=None,
    help="Signing keys: the algorithm (ledger: ed25519; release: ecdsa-p256-sha256 or RSA).",
)
@click.option("--subject", default="radguard release signer", help="Release certificate CN.")
def key_new(kind: str, out: Path | None, algorithm: str | None, subject: str) -> None:
    """Create a key: a new pseudonym key is a new pseudonym space; signing keys are per site."""
    if kind == "pseudonym":
        from radguard.deid.keys import default_key_path, load_key, new_key_file

        out = out or default_key_path()
        new_key_file(out)
        click.echo(f"wrote {out} (fingerprint {load_key(out).fingerprint})")
        return
    from radguard.govern.keys import keys_home, new_signing_key

    key_id = new_signing_key(kind, algorithm=algorithm, subject=subject)
    click.echo(f"created {kind} key {key_id} under {keys_home() / kind}")


@key.command("rotate")
@click.option(
    "--kind",
    type=click.Choice(["pseudonym", "ledger", "release"]),
    required=True,
    help="The signing key to replace (pseudonym keys are never rotated).",
)
@click.option(
    "--algorithm",
    type=click.Choice(["ecdsa-p256-sha256", "rsa-pkcs1v15-sha256", "ed25519"]),
    default=None,
    help="Algorithm of the new key (default: as for 'key new').",
)
def key_rotate(kind: str, algorithm: str | None) -> None:
    """Replace a signing key; old heads and releases stay verifiable with its public key."""
    if kind == "pseudonym":
        raise KeyFileError(
            "pseudonym keys are not rotated: a new key is a new pseudonym space "
            "(create one with 'radguard key new --out PATH')"
        )
    from radguard.govern.keys import new_signing_key

    key_id = new_signing_key(kind, algorithm=algorithm, rotate=True)
    click.echo(f"rotated the {kind} key: new key {key_id} (old public key kept)")


@key.command("show-public")
@click.option(
    "--kind",
    type=click.Choice(["ledger", "release"]),
    required=True,
    help="Which signing key.",
)
@click.option("--all", "show_all", is_flag=True, help="Every key ever used (current and retired).")
def key_show_public(kind: str, show_all: bool) -> None:
    """Print the public key (release: the X.509 certificate) to give to verifiers."""
    from radguard.govern.keys import current_key_id, keys_home, public_keys

    current = current_key_id(kind)
    for key_id, pem in sorted(public_keys(kind).items()):
        if show_all or key_id == current:
            cert = keys_home() / kind / f"{key_id}.cert.pem"
            click.echo(f"# {kind} key {key_id}" + (" (current)" if key_id == current else ""))
            click.echo((cert.read_bytes() if cert.exists() else pem).decode(), nl=False)


@key.command("show")
@_key_option
def key_show(key_file: Path | None) -> None:
    """Print the key's fingerprint (safe to share), never the key."""
    click.echo(_keyring(key_file).fingerprint)


@main.group()
def vault() -> None:
    """The encrypted mapping vault of a run (honest-broker re-identification)."""


@vault.command("lookup")
@click.argument("vault_path", metavar="VAULT", type=click.Path(exists=True, path_type=Path))
@click.argument("value")
@_key_option
@click.option("--reverse", is_flag=True, help="Look up an original value's pseudonym instead.")
@click.option(
    "--kind",
    type=click.Choice(["patient_id", "patient_name", "study_uid"]),
    default=None,
    help="Only entries of this kind (default: all kinds).",
)
def vault_lookup(
    vault_path: Path, value: str, key_file: Path | None, reverse: bool, kind: str | None
) -> None:
    """Find the original behind a pseudonym (or the reverse). Needs the run's key."""
    from radguard.deid.vault import Vault

    store = Vault(vault_path, _keyring(key_file))
    found = store.lookup(value, kind=kind, reverse=reverse)
    store.close()
    if not found:
        _console().print("no entry")
        sys.exit(EXIT_FINDINGS)
    for entry_kind, original, pseudonym in found:
        click.echo(f"{entry_kind}\t{original}\t{pseudonym}")


@main.command("verify")
@click.argument(
    "paths",
    metavar="[ORIG] DEID",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@_policy_option
@_add_option
@_drop_option
@click.option(
    "--answer-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Phantom answer key: also score every planted identifier.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a self-contained HTML report here (and its JSON beside it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(
    paths: tuple[Path, ...],
    policy_spec: str | None,
    add: tuple[str, ...],
    drop: tuple[str, ...],
    answer_key: Path | None,
    report_path: Path | None,
    as_json: bool,
) -> None:
    """Scan a de-identified set for anything identifying that is left (exit 1 on findings).

    With ORIG (the originals) every identifying value of the originals is searched in every
    output; with the run's manifest beside DEID, series, studies and references are checked
    one to one. DEID alone: generic PHI patterns and census name lists.
    """
    from radguard.report import render_verify_html
    from radguard.verify import verify

    if len(paths) > 2:
        raise click.UsageError("give DEID, or ORIG and DEID")
    orig, deid = (paths[0], paths[1]) if len(paths) == 2 else (None, paths[0])
    policy = _policy(policy_spec, add, drop)
    report = verify(deid, orig, policy, answer_key)
    data = report.to_json()
    if report_path is not None:
        from radguard.risk import DEFAULT_QIS, RiskInputError, assess, collect_records

        try:  # the released set's risk, for the same page
            risk = assess(collect_records(deid, DEFAULT_QIS), DEFAULT_QIS).to_json()
            data["risk"] = {k: v for k, v in risk.items() if k != "highest_risk"}
        except RiskInputError:
            pass  # nothing released: no risk to show
        report_path.write_text(render_verify_html(data), encoding="utf-8")
        report_path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        console = Console()
        not_run = [name for name, result in report.checks.items() if result.startswith("not run")]
        verdict = "PASSED" if report.passed else "FAILED"
        if not_run:
            verdict += f" (not checked: {', '.join(not_run)})"
        table = Table(title=f"radguard verify ({report.mode}): {verdict}")
        table.add_column("check")
        table.add_column("result")
        for name, result in report.checks.items():
            table.add_row(name, result)
        table.add_row("files checked", str(report.files_checked))
        table.add_row("findings", str(len(report.findings)))
        table.add_row("retained by option", str(len(report.retained)))
        console.print(table)
        for finding in report.findings[:20]:
            console.print(
                f"  {finding.file} {finding.path}: {finding.category} "
                f"{finding.found} ({finding.why})",
                highlight=False,
                markup=False,
            )
        if len(report.findings) > 20:
            console.print(f"  ... {len(report.findings) - 20} more (use --json or --report)")
    sys.exit(EXIT_OK if report.passed else EXIT_FINDINGS)


@main.command("risk")
@click.argument("deid", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--qi",
    "qis",
    multiple=True,
    metavar="KEYWORD",
    help="A quasi-identifier (DICOM keyword); repeatable. Default: sex, age, size, "
    "weight, study date, institution, device, modality, body part, protocol, "
    "image size.",
)
@click.option(
    "--unit",
    type=click.Choice(["patient", "study", "series"]),
    default="patient",
    help="What one record is (a patient takes the values of its first study).",
)
@click.option(
    "--population",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Size of the population the set was drawn from (enables journalist and marketer risk).",
)
@click.option(
    "--target",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.2,
    help="Prosecutor risk the suggested generalization plan aims for.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a self-contained HTML report with plots (and its JSON beside it).",
)
def risk_command(
    deid: Path,
    qis: tuple[str, ...],
    unit: str,
    population: int | None,
    target: float,
    as_json: bool,
    report_path: Path | None,
) -> None:
    """Re-identification risk of a released set from its quasi-identifiers (ARX measures)."""
    from radguard.risk import DEFAULT_QIS, assess, plan, scan_folder, suggest

    chosen = tuple(qis) or DEFAULT_QIS
    scan = scan_folder(deid, chosen, unit)
    report = assess(scan.records, chosen, population=population)
    singles = suggest(scan.records, chosen, report, target=target)
    combined = plan(scan.records, chosen, report, target=target)
    data = report.to_json()
    data["suggestions"] = [x.to_json() for x in singles]
    data["plan"] = combined.to_json()
    data["files_read"] = scan.files_read
    if report_path is not None:
        from radguard.report import render_risk_html

        report_path.write_text(render_risk_html(data), encoding="utf-8")
        report_path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    table = Table(title=f"re-identification risk: {len(scan.records)} {unit} records")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("k-anonymity", str(report.k_anonymity))
    table.add_row("unique records", f"{report.unique_fraction:.1%}")
    table.add_row("prosecutor risk (highest)", f"{report.prosecutor.highest:.3f}")
    table.add_row("prosecutor risk (average)", f"{report.prosecutor.average:.3f}")
    if report.journalist is not None:
        table.add_row("journalist risk (highest)", f"{report.journalist.highest:.3f}")
    if report.marketer is not None:
        table.add_row("marketer risk", f"{report.marketer:.3f}")
    table.add_row("quasi-identifiers", ", ".join(chosen))
    console.print(table)
    ideas = Table(title="generalizations (risk after each)")
    ideas.add_column("change")
    ideas.add_column("prosecutor risk", justify="right")
    ideas.add_column("unique", justify="right")
    for idea in singles[:10]:
        ideas.add_row(
            idea.description, f"{idea.prosecutor_risk:.3f}", f"{idea.unique_fraction:.1%}"
        )
    ideas.add_row(
        f"plan: {combined.description}",
        f"{combined.prosecutor_risk:.3f}",
        f"{combined.unique_fraction:.1%}",
    )
    console.print(ideas)


@main.command("phantom")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--patients", type=click.IntRange(1), default=2, help="Number of patients.")
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=0,
    help="Random seed: the same seed gives the same bytes.",
)
@click.option(
    "--answer-key",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the answer key (default: OUT.answer.json beside OUT).",
)
@click.option("--workers", type=int, default=1, help="Processes (0: all cores).")
def phantom_command(
    out: Path, patients: int, seed: int, answer_key: Path | None, workers: int
) -> None:
    """Synthesize studies with planted identifiers, and the answer key that lists them."""
    from radguard.phantom import default_key_path, generate

    try:
        key = generate(out, patients, seed, answer_key=answer_key, workers=workers)
    except (ValueError, FileExistsError) as error:
        raise RadguardError(str(error)) from error
    key_path = answer_key or default_key_path(out)
    click.echo(
        f"wrote {len(key.files)} files for {patients} patient(s) under {out}; "
        f"answer key {key_path} (seed {seed})"
    )


@main.command("sample")
@click.argument("out", type=click.Path(path_type=Path))
def sample(out: Path) -> None:
    """Write a sample input set built from the DICOM files that pydicom ships."""
    from radguard.samples import build_sample_set

    count = build_sample_set(out)
    click.echo(f"wrote {count} sample files under {out}")


from radguard.gateway.cli import pull as _pull  # noqa: E402
from radguard.gateway.cli import serve as _serve  # noqa: E402

main.add_command(_serve)
main.add_command(_pull)

from radguard.govern.cli import consent as _consent  # noqa: E402
from radguard.govern.cli import ledger as _ledger  # noqa: E402
from radguard.govern.cli import release_command as _release_command  # noqa: E402
from radguard.govern.cli import verify_release_command as _verify_release_command  # noqa: E402

main.add_command(_consent)
main.add_command(_ledger)
main.add_command(_release_command)
main.add_command(_verify_release_command)

from radguard.deface.cli import deface as _deface  # noqa: E402

main.add_command(_deface)

from radguard.pixels.cli import pixels as _pixels  # noqa: E402

main.add_command(_pixels)

from radguard.vet.cli import vet as _vet  # noqa: E402

main.add_command(_vet)

if __name__ == "__main__":  # pragma: no cover
    main()
