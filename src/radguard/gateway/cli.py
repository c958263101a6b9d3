"""``radguard serve`` and ``radguard pull``: thin commands over the gateway library.

Import-light: pynetdicom and dicomweb-client are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    metavar="FILE",
    help="Gateway configuration (TOML; schema in docs/gateway.md).",
)


def _load(config_path: Path) -> Any:
    from radguard.gateway.config import load_config

    return load_config(config_path)


@click.group("serve", invoke_without_command=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help="Gateway configuration (TOML; schema in docs/gateway.md).",
)
@click.pass_context
def serve(ctx: click.Context, config_path: Path | None) -> None:
    """Run the DICOM gateway: receive (C-STORE), de-identify, verify, forward.

    \b
    radguard serve --config gateway.toml          run until SIGTERM / Ctrl-C
    radguard serve status --config gateway.toml   queues, failures, dead letters
    radguard serve check --config gateway.toml    validate the configuration
    radguard serve retry --config gateway.toml    requeue dead-lettered deliveries

    The configuration must name a pseudonym key file and the calling AE titles allowed to
    send; everything received is spooled durably before success is answered.
    """
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("--config FILE is required (see docs/gateway.md)")
    import logging
    import signal

    from radguard.gateway.server import Gateway

    config = _load(config_path)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    gateway = Gateway(config)  # with [ledger]: checks the ledger and its signing key now
    signal.signal(signal.SIGTERM, lambda *_: gateway.request_stop())
    signal.signal(signal.SIGINT, lambda *_: gateway.request_stop())
    gateway.start()
    click.echo(
        f"radguard gateway {config.ae_title} listening on {config.host}:{gateway.port}"
        + (f", http on {config.http.host}:{config.http.port}" if config.http.port else "")
        + f"; spool {config.spool}; key {gateway.keyring.fingerprint}",
        err=True,
    )
    try:
        gateway.wait()
    finally:
        gateway.stop()


@serve.command("status")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def serve_status(config_path: Path, as_json: bool) -> None:
    """Queues, pending deliveries, dead letters with reasons (exit 1 when any dead letter)."""
    from radguard.gateway.status import format_status, gateway_status

    report = gateway_status(_load(config_path))
    click.echo(json.dumps(report, indent=1) if as_json else format_status(report))
    sys.exit(0 if report.get("healthy", True) else 1)


@serve.command("check")
@_config_option
def serve_check(config_path: Path) -> None:
    """Validate a gateway configuration and list every problem (exit 2 when invalid)."""
    from radguard.gateway.config import check_config

    problems = check_config(config_path)
    if problems:
        click.echo(f"{config_path}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(2)
    config = _load(config_path)
    click.echo(
        f"{config_path}: valid; AE {config.ae_title} on port {config.port}; "
        f"{len(config.destinations)} destination(s): "
        + ", ".join(f"{d.name} ({d.kind.value})" for d in config.destinations)
    )


@serve.command("retry")
@_config_option
@click.option("--entry", default=None, help="Requeue only this dead-letter entry (its name).")
def serve_retry(config_path: Path, entry: str | None) -> None:
    """Move dead-lettered deliveries back to their outbox (after fixing the destination)."""
    from radguard.gateway.status import requeue

    moved = requeue(_load(config_path), entry)
    for name in moved:
        click.echo(f"requeued {name}")
    click.echo(f"{len(moved)} delivery(ies) requeued")


@click.command("pull")
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option(
    "--from",
    "source_kind",
    type=click.Choice(["dicomweb", "dimse"]),
    required=True,
    help="Protocol of the PACS.",
)
@click.option("--study", "studies", multiple=True, metavar="UID", help="Study to pull; repeatable.")
@click.option(
    "--query",
    "queries",
    multiple=True,
    metavar="KEYWORD=VALUE",
    help="Pull every study matching (QIDO-RS / C-FIND keys, e.g. PatientID=123, "
    "StudyDate=20240101-20240131, ModalitiesInStudy=CT); repeatable.",
)
@click.option("--url", default="", help="DICOMweb base URL (with --from dicomweb).")
@click.option(
    "--auth", type=click.Choice(["none", "basic", "bearer"]), default="none", help="DICOMweb auth."
)
@click.option("--username", default="", help="User name for basic authentication.")
@click.option(
    "--password-file", type=click.Path(path_type=Path), default=None, help="Basic auth password."
)
@click.option("--token-file", type=click.Path(path_type=Path), default=None, help="Bearer token.")
@click.option("--ca-bundle", type=click.Path(path_type=Path), default=None, help="CA for HTTPS.")
@click.option("--host", default="", help="PACS host (with --from dimse).")
@click.option("--port", type=int, default=0, help="PACS DICOM port.")
@click.option("--called-ae", default="", help="PACS AE title.")
@click.option("--calling-ae", default="RADGUARD", show_default=True, help="Our AE title.")
@click.option(
    "--retrieve",
    type=click.Choice(["get", "move"]),
    default="get",
    show_default=True,
    help="C-GET, or C-MOVE to a storage node started here on --move-port.",
)
@click.option("--move-port", type=int, default=0, help="Port for C-MOVE deliveries.")
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None, help="DICOM TLS cert.")
@click.option("--tls-key", type=click.Path(path_type=Path), default=None, help="DICOM TLS key.")
@click.option("--tls-ca", type=click.Path(path_type=Path), default=None, help="DICOM TLS CA.")
@click.option(
    "--policy",
    "policy_spec",
    metavar="NAME|FILE",
    default=None,
    help="Built-in policy (basic, research, safe-harbor) or a policy file. Default: research.",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Pseudonym key file (default: your own key, created once).",
)
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option(
    "--max-risk",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    metavar="P",
    help="Withhold the whole pulled set if its prosecutor risk is above P.",
)
@click.option("--keep-originals", is_flag=True, help="Keep the fetched originals in OUT.run.")
@click.option("--no-verify", is_flag=True, help="Skip the verifier (not recommended).")
def pull(
    output_path: Path,
    source_kind: str,
    studies: tuple[str, ...],
    queries: tuple[str, ...],
    url: str,
    auth: str,
    username: str,
    password_file: Path | None,
    token_file: Path | None,
    ca_bundle: Path | None,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    retrieve: str,
    move_port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    policy_spec: str | None,
    key_file: Path | None,
    workers: int,
    max_risk: float | None,
    keep_originals: bool,
    no_verify: bool,
) -> None:
    """Fetch studies from a PACS (DICOMweb or DIMSE) and de-identify them into OUT.

    \b
    radguard pull --from dicomweb --url http://pacs/dicom-web --study 1.2.3 OUT
    radguard pull --from dimse --host pacs --port 104 --called-ae PACS \\
        --query PatientID=123 --retrieve get OUT

    Same pipeline and exit codes as 'radguard deid' (run records in OUT.run), then the
    verifier against the fetched originals (exit 1 on any finding or failed study).
    """
    from radguard.errors import RadguardError
    from radguard.gateway.config import AuthKind, TlsSettings
    from radguard.gateway.pull import PullSource, Retrieve, SourceKind
    from radguard.gateway.pull import pull as run_pull
    from radguard.settings import load_policy

    query: dict[str, str] = {}
    for item in queries:
        keyword, sep, value = item.partition("=")
        if not sep or not keyword:
            raise click.BadParameter(f"{item!r}: expected KEYWORD=VALUE", param_hint="--query")
        query[keyword.strip()] = value.strip()
    if not studies and not query:
        raise click.UsageError("give --study UID or --query KEYWORD=VALUE")
    secret = ""
    secret_file = password_file if auth == "basic" else token_file if auth == "bearer" else None
    if auth != "none":
        if secret_file is None:
            raise click.UsageError(f"--auth {auth} needs --password-file or --token-file")
        secret = secret_file.read_text(encoding="utf-8").strip()
    tls = None
    if tls_cert is not None and tls_key is not None:
        tls = TlsSettings(tls_cert, tls_key, tls_ca)
    kind = SourceKind(source_kind)
    if kind == SourceKind.DICOMWEB and not url:
        raise click.UsageError("--from dicomweb needs --url")
    if kind == SourceKind.DIMSE and not (host and port and called_ae):
        raise click.UsageError("--from dimse needs --host, --port and --called-ae")
    source = PullSource(
        kind,
        url=url.rstrip("/"),
        auth=AuthKind(auth),
        username=username,
        secret=secret,
        ca_bundle=ca_bundle,
        host=host,
        port=port,
        called_ae_title=called_ae,
        calling_ae_title=calling_ae,
        retrieve=Retrieve(retrieve),
        move_port=move_port,
        tls=tls,
    )
    from radguard.deid.keys import load_key, load_or_create_default

    keyring = load_key(key_file) if key_file is not None else load_or_create_default()[0]
    result = run_pull(
        source,
        output_path,
        study_uids=list(studies),
        query=query,
        policy=load_policy(policy_spec),
        keyring=keyring,
        workers=workers,
        max_risk=max_risk,
        verify=not no_verify,
        keep_originals=keep_originals,
    )
    for index, uid in enumerate(result.studies, start=1):  # original UIDs are not printed
        if uid in result.failed_studies:
            click.echo(
                f"study {index} of {len(result.studies)}: {result.failed_studies[uid]}", err=True
            )
    if result.summary is None:
        raise RadguardError("nothing was fetched")
    counts = result.summary.counts
    click.echo(
        f"pulled {len(result.studies)} study(ies), {result.fetched} instances: "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        + (f"; verifier {'passed' if result.verify.passed else 'FAILED'}" if result.verify else "")
    )
    sys.exit(result.exit_code)
