"""``radguard vet``: privacy audits of models, driven by a spec file.

A spec is a Python file naming the callables and data (see docs/vet.md):
``model_factory``, ``train_fn``, ``dataset`` (Records, or a callable returning them),
``test``; for memorization ``synthetic``, ``train``, ``holdout`` (arrays or callables).
Exit codes: 0 the audit passed its policy, 1 it failed, 2 usage or input errors.
Heavy imports (torch, opacus, flwr) happen inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

EXIT_OK, EXIT_FAIL = 0, 1


def _spec_value(path: Path, name: str, required: bool = True) -> Any:
    from radguard.vet.data import VetError
    from radguard.vet.parallel import load_spec

    module = load_spec(path)
    if not hasattr(module, name):
        if required:
            raise VetError(f"spec {path} does not define {name!r}")
        return None
    return getattr(module, name)


def _data(path: Path, name: str, required: bool = True) -> Any:
    value = _spec_value(path, name, required)
    return value() if callable(value) else value


def _callable(path: Path, name: str) -> Any:
    from radguard.vet.parallel import SpecCallable

    _spec_value(path, name)
    return SpecCallable(str(path.resolve()), name)


def record_card(card: dict[str, Any], json_path: Path, ledger: str | None) -> int | None:
    """Append the card's digest and verdict to the governance ledger: the given one, or the
    site's default ledger when it exists. Returns the entry index (None: no ledger)."""
    import hashlib

    from radguard.govern import default_ledger, open_ledger

    url = ledger or default_ledger()
    if ledger is None and not Path(url).exists():
        return None
    entry = {
        "kind": "model-privacy-card",
        "audit": card["kind"],
        "verdict": card["verdict"],
        "card_sha256": hashlib.sha256(json_path.read_bytes()).hexdigest(),
        "card": json_path.name,
        "checks": [
            {"check": c["check"], "value": c["value"], "limit": c["limit"]}
            for c in card.get("checks", [])
        ],
    }
    with open_ledger(url) as opened:
        return opened.append(entry).index


def _finish(card: dict[str, Any], out: Path, ledger: str | None = None, use: bool = True) -> None:
    from radguard.vet.card import write_card

    json_path, html_path = write_card(card, out)
    click.echo(f"verdict: {card['verdict']}; card {json_path} and {html_path}")
    if use:
        index = record_card(card, json_path, ledger)
        if index is not None:
            click.echo(f"recorded in the ledger as entry {index}")
    sys.exit(EXIT_OK if card["verdict"] == "pass" else EXIT_FAIL)


_SPEC = click.option(
    "--spec",
    "spec",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Python file naming the model factory, training recipe and data.",
)
_LEDGER = click.option(
    "--ledger",
    default=None,
    help="Governance ledger (SQLite path or postgresql:// URL) to record the card in; "
    "default: the site ledger when it exists.",
)
_NO_LEDGER = click.option("--no-ledger", is_flag=True, help="Do not record the card.")
_OUT = click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Card path without suffix: writes OUT.json and OUT.html.",
)


@click.group("vet")
def vet() -> None:
    """Privacy audits of models: membership inference, memorization, gradients, DP training."""


def _policy(max_tpr: tuple[str, ...], max_auc: float | None) -> Any:
    from radguard.vet.data import VetError
    from radguard.vet.mia import MiaPolicy

    limits = []
    for item in max_tpr or ("0.001=0.01",):
        fpr, _, tpr = item.partition("=")
        try:
            limits.append((float(fpr), float(tpr)))
        except ValueError as error:
            raise VetError(f"--max-tpr takes FPR=TPR (e.g. 0.001=0.01), got {item!r}") from error
    return MiaPolicy(max_tpr=tuple(limits), max_auc=max_auc)


def _mia_settings(
    references: int,
    attacks: tuple[str, ...],
    seed: int,
    workers: int,
    max_tpr: tuple[str, ...],
    max_auc: float | None,
) -> Any:
    from radguard.vet.mia import Attack, MiaSettings

    chosen = tuple(Attack(a) for a in attacks) if attacks else None
    if chosen is None:
        chosen = (
            (Attack.LOSS, Attack.RMIA_ONLINE)
            + ((Attack.RMIA_OFFLINE,) if references >= 2 else ())
            + ((Attack.LIRA_ONLINE, Attack.LIRA_OFFLINE) if references >= 16 else ())
        )
    primary = Attack.RMIA_ONLINE if Attack.RMIA_ONLINE in chosen else chosen[-1]
    return MiaSettings(
        references=references,
        attacks=chosen,
        primary=primary,
        seed=seed,
        workers=workers,
        policy=_policy(max_tpr, max_auc),
    )


_ATTACKS = ["loss", "rmia-offline", "rmia-online", "lira-offline", "lira-online"]


@vet.command("mia")
@_SPEC
@_OUT
@_LEDGER
@_NO_LEDGER
@click.option("--references", default=4, show_default=True, help="Reference models to train.")
@click.option(
    "--attack",
    "attacks",
    multiple=True,
    type=click.Choice(_ATTACKS),
    help="Attacks to run (repeat); default LOSS and RMIA (LiRA too with 16+ references).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the splits and training.")
@click.option("--workers", default=2, show_default=True, help="Training processes (0: all).")
@click.option(
    "--max-tpr",
    multiple=True,
    metavar="FPR=TPR",
    help="Policy limit, e.g. 0.001=0.01 (default): TPR at 0.1%% FPR at most 1%%.",
)
@click.option("--max-auc", type=float, default=None, help="Policy limit on the attack AUC.")
def mia_command(
    spec: Path,
    out: Path,
    ledger: str | None,
    no_ledger: bool,
    references: int,
    attacks: tuple[str, ...],
    seed: int,
    workers: int,
    max_tpr: tuple[str, ...],
    max_auc: float | None,
) -> None:
    """Membership inference audit of a training recipe (LOSS, RMIA, LiRA)."""
    from radguard.vet.mia import mia

    settings = _mia_settings(references, attacks, seed, workers, max_tpr, max_auc)
    report = mia(
        _callable(spec, "model_factory"),
        _callable(spec, "train_fn"),
        _data(spec, "dataset"),
        settings,
        test=_data(spec, "test", required=False),
    )
    _finish(report.to_card(), out, ledger, not no_ledger)


@vet.command("memorization")
@_SPEC
@_OUT
@_LEDGER
@_NO_LEDGER
@click.option(
    "--embedding",
    "embeddings",
    multiple=True,
    type=click.Choice(["pixel", "ssim", "encoder"]),
    help="Similarity measures (repeat); default all three.",
)
@click.option("--fpr", default=0.01, show_default=True, help="Held-out images allowed flagged.")
@click.option("--max-share", default=0.05, show_default=True, help="Policy: near-copy share.")
@click.option("--seed", default=0, show_default=True, help="Seed of the encoder and sampling.")
def memorization_command(
    spec: Path,
    out: Path,
    ledger: str | None,
    no_ledger: bool,
    embeddings: tuple[str, ...],
    fpr: float,
    max_share: float,
    seed: int,
) -> None:
    """Near-copies of training images among a generator's synthetic images."""
    from radguard.vet.memorization import Embedding, MemorizationSettings, memorization

    chosen = tuple(Embedding(e) for e in embeddings) or tuple(Embedding)
    report = memorization(
        _data(spec, "synthetic"),
        _data(spec, "train"),
        _data(spec, "holdout"),
        _data(spec, "train_patients", required=False),
        MemorizationSettings(embeddings=chosen, fpr=fpr, max_near_copy_share=max_share, seed=seed),
    )
    _finish(report.to_card(), out, ledger, not no_ledger)


@vet.command("gradients")
@_SPEC
@_OUT
@_LEDGER
@_NO_LEDGER
@click.option("--batch-size", "batch_sizes", multiple=True, type=int, help="Default 1, 4, 8.")
@click.option("--local-steps", "local_steps", multiple=True, type=int, help="Default 1, 3.")
@click.option("--iterations", default=300, show_default=True, help="Attack optimizer steps.")
@click.option("--trials", default=2, show_default=True, help="Batches attacked per cell.")
@click.option("--utility-rounds", default=0, show_default=True, help="FedAvg rounds (0: skip).")
@click.option("--seed", default=0, show_default=True, help="Seed of the batches and attack.")
def gradients_command(
    spec: Path,
    out: Path,
    ledger: str | None,
    no_ledger: bool,
    batch_sizes: tuple[int, ...],
    local_steps: tuple[int, ...],
    iterations: int,
    trials: int,
    utility_rounds: int,
    seed: int,
) -> None:
    """Gradient inversion of client updates, with and without the defences."""
    from radguard.vet.gradients import InversionSettings, gradients

    settings = InversionSettings(
        iterations=iterations,
        trials=trials,
        seed=seed,
        batch_sizes=batch_sizes or (1, 4, 8),
        local_steps=local_steps or (1, 3),
    )
    report = gradients(
        _callable(spec, "model_factory"),
        _data(spec, "dataset"),
        settings,
        test=_data(spec, "test", required=False),
        utility_rounds=utility_rounds,
    )
    _finish(report.to_card(), out, ledger, not no_ledger)


@vet.command("train-dp")
@_SPEC
@_OUT
@_LEDGER
@_NO_LEDGER
@click.option("--epsilon", default=8.0, show_default=True, help="Target epsilon per patient.")
@click.option("--delta", type=float, default=None, help="Default 1/(10 N patients).")
@click.option("--epochs", default=20, show_default=True, help="Training epochs.")
@click.option("--batch-patients", default=256, show_default=True, help="Expected batch size.")
@click.option("--lr", default=1e-2, show_default=True, help="Learning rate (Adam).")
@click.option("--max-grad-norm", default=1.0, show_default=True, help="Per-patient clipping norm.")
@click.option(
    "--audit-references",
    default=4,
    show_default=True,
    help="References for the membership audit of the trained model (0: no audit).",
)
@click.option("--save", type=click.Path(path_type=Path), help="Save the model state_dict here.")
@click.option("--seed", default=0, show_default=True, help="Seed of the splits and training.")
@click.option("--workers", default=2, show_default=True, help="Training processes (0: all).")
def train_dp_command(
    spec: Path,
    out: Path,
    ledger: str | None,
    no_ledger: bool,
    epsilon: float,
    delta: float | None,
    epochs: int,
    batch_patients: int,
    lr: float,
    max_grad_norm: float,
    audit_references: int,
    save: Path | None,
    seed: int,
    workers: int,
) -> None:
    """Train with DP-SGD (Opacus, PRV accountant, patient-level) and audit the result."""
    from radguard.vet.dp import DpSettings, train_dp

    settings = DpSettings(
        target_epsilon=epsilon,
        delta=delta,
        epochs=epochs,
        batch_patients=batch_patients,
        lr=lr,
        max_grad_norm=max_grad_norm,
    )
    audit = (
        _mia_settings(audit_references, (), seed, workers, (), None) if audit_references else None
    )
    result = train_dp(
        _callable(spec, "model_factory"),
        _data(spec, "dataset"),
        settings,
        test=_data(spec, "test", required=False),
        audit=audit,
        seed=seed,
    )
    if save is not None:
        import torch

        torch.save(result.model.state_dict(), save)
    click.echo(f"epsilon {result.account.epsilon:.3f} at delta {result.account.delta:.3g}")
    _finish(result.to_card(), out, ledger, not no_ledger)
