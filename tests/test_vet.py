"""Model vetting: metrics, attacks, memorization, DP training, cards and the CLI.

Data: tests/data/pneumoniamnist-small.npz (2,400 train + 624 test real chest X-rays, 28x28,
from PneumoniaMNIST; provenance and sha256 in docs/vet.md). Models and epochs are kept small
so the whole file runs in about two minutes on two cores; the full-size targets are measured
by bench/bench_vet.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import radguard.vet as vet
from radguard.vet import (
    Attack,
    DpSettings,
    Embedding,
    MemorizationSettings,
    MiaSettings,
    ModelFactory,
    Recipe,
    VetError,
    group_patients,
    load_npz,
    memorization,
    mia,
    train_private,
    write_card,
)
from radguard.vet.mia import lira_scores, rmia_scores
from radguard.vet.stats import (
    attack_metrics,
    auc,
    clopper_pearson,
    roc_curve,
    tpr_at_fpr,
)

FIXTURE = Path(__file__).parent / "data" / "pneumoniamnist-small.npz"
FIXTURE_SHA256 = "f7ab1a24146ca0e1d43a39c5e74f056de6c4a412e1daf2122cf7f0f6c7038365"
torch.set_num_threads(2)


def test_fixture_is_pinned() -> None:
    assert hashlib.sha256(FIXTURE.read_bytes()).hexdigest() == FIXTURE_SHA256


def test_public_names_import() -> None:
    for name in vet.__all__:
        assert hasattr(vet, name), name


# ---------------------------------------------------------------- metrics


def test_clopper_pearson_known_values() -> None:
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.3085, abs=1e-4)
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.1871, abs=1e-4) and high == pytest.approx(0.8129, abs=1e-4)


def test_auc_matches_pair_counting() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=300), 1)  # ties on purpose
    members = rng.random(300) < 0.4
    pos, neg = scores[members], scores[~members]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(scores, members) == pytest.approx(pairs)
    fpr, tpr = roc_curve(scores, members)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_tpr_at_fpr_sets_threshold_on_nonmembers() -> None:
    nonmembers = np.arange(1000, dtype=float)  # 0..999
    members = np.array([999.5, 995.5, 985.5, 500.0])
    scores = np.r_[members, nonmembers]
    flags = np.r_[np.ones(4, bool), np.zeros(1000, bool)]
    at1 = tpr_at_fpr(scores, flags, 0.01)  # 10 non-members may lie above: threshold 989
    assert at1.threshold == 989 and at1.true_positives == 2 and at1.nonmembers_above == 10
    at0 = tpr_at_fpr(scores, flags, 0.0)
    assert at0.true_positives == 1 and at0.nonmembers_above == 0
    assert at0.low <= 0.25 <= at0.high


def test_random_scores_are_within_chance() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(4000)
    flags = rng.random(4000) < 0.5
    metrics = attack_metrics(scores, flags)
    assert metrics.auc_low < 0.5 < metrics.auc_high
    assert metrics.at(0.01).to_json()["within_chance"]


# ---------------------------------------------------------------- attacks on known signals


def test_rmia_and_lira_find_planted_members() -> None:
    """Records whose target confidence beats what their references predict are members."""
    rng = np.random.default_rng(1)
    n, k = 2000, 4
    difficulty = rng.normal(3, 2, n)  # per-record phi under an OUT model
    inside = np.zeros((k, n), bool)
    half = rng.permutation(n)[: n // 2]
    inside[0, half] = inside[2, rng.permutation(n)[: n // 2]] = True
    inside[1] = ~inside[0]
    inside[3] = ~inside[2]
    members = np.zeros(n, bool)
    members[rng.permutation(n)[: n // 2]] = True
    gain = 2.0
    refs = difficulty + gain * inside + rng.normal(0, 0.3, (k, n))
    target = difficulty + gain * members + rng.normal(0, 0.3, n)
    population = rng.random(n) < 0.2
    for online in (True, False):
        ranking, score = rmia_scores(target, refs, inside, population, online)
        assert auc(ranking, members) > 0.9
        assert np.all((score >= 0) & (score <= 1))
        assert auc(lira_scores(target, refs, inside, online), members) > 0.9
    assert auc(target, members) < 0.8  # LOSS is confused by per-record difficulty
    with pytest.raises(VetError):
        rmia_scores(target, refs[:1], inside[:1], population, online=False)


def test_settings_refuse_impossible_attacks() -> None:
    with pytest.raises(VetError):
        MiaSettings(references=1, attacks=(Attack.RMIA_OFFLINE,), primary=Attack.RMIA_OFFLINE)
    with pytest.raises(VetError):
        MiaSettings(attacks=(Attack.LOSS,), primary=Attack.RMIA_ONLINE)


# ---------------------------------------------------------------- end-to-end audit


def _fixture(limit: int, per_patient: int = 1) -> vet.Records:
    records = load_npz(FIXTURE, "train", limit=limit)
    if per_patient > 1:
        keys = group_patients(len(records), per_patient, seed=5)
        records = vet.Records(records.images, records.targets, keys, records.groups)
    return records


def test_mia_audit_of_an_overfit_recipe(tmp_path: Path) -> None:
    """Fixed split (seed 0): 600 images as 300 patients of 2, 20% population, members and
    non-members of equal size; 2 references trained in 2 spawned processes."""
    records = _fixture(600, per_patient=2)
    test = load_npz(FIXTURE, "test", limit=200)
    settings = MiaSettings(
        references=2,
        attacks=(Attack.LOSS, Attack.RMIA_OFFLINE, Attack.RMIA_ONLINE, Attack.LIRA_ONLINE),
        workers=2,
    )
    report = mia(ModelFactory(width=8), Recipe(epochs=25, threads=1), records, settings, test)
    card = report.to_card()
    assert report.execution == "2 spawned processes"
    assert card["data"]["members"] == card["data"]["nonmembers"]
    # Whole patients on one side of the split.
    audited = records.subset(report.audited)
    for key in np.unique(audited.patients):
        assert len(set(report.members[report.audited][audited.patients == key])) == 1
    assert len(card["per_patient"]) == card["data"]["audited_records"] // 2
    assert set(card["metrics"]) == {"loss", "rmia-offline", "rmia-online", "lira-online"}
    assert card["utility"]["target_test_auc"] > 0.8
    # An overfit model leaks: the reference-calibrated attack sees it.
    assert report.metrics[Attack.RMIA_ONLINE].auc > 0.5
    assert card["subgroups"]["label"][0]["members"] > 0
    assert card["most_exposed_patients"][0]["member"] is True
    assert any("LiRA" in note or "lira" in note for note in card["notes"])
    json_path, html_path = write_card(card, tmp_path / "card")
    assert json.loads(json_path.read_text())["verdict"] == card["verdict"]
    page = html_path.read_text()
    assert "<svg" in page and "rmia-online" in page and "<script" not in page


def test_audit_of_a_given_model_uses_its_members() -> None:
    records = _fixture(300)
    members = np.zeros(len(records), bool)
    members[:120] = True
    model = Recipe(epochs=3)(ModelFactory(width=4)(), records.subset(members), 0)
    report = mia(
        ModelFactory(width=4),
        Recipe(epochs=3),
        records,
        MiaSettings(references=1, attacks=(Attack.LOSS, Attack.RMIA_ONLINE), workers=1),
        target_model=model,
        members=members,
    )
    assert int(report.members[report.audited].sum()) == 120
    assert not np.any(report.members & ~report.audited)  # no member in the population
    assert report.execution.startswith("sequential")


# ---------------------------------------------------------------- DP training


def test_dp_training_is_patient_level_and_accounted() -> None:
    records = _fixture(300, per_patient=3)  # 100 patients of 3 images
    model = ModelFactory(width=4, norm="batch")()  # BatchNorm: fixed by ModuleValidator
    trained, account = train_private(
        model, records, 0, DpSettings(target_epsilon=4.0, epochs=2, batch_patients=25)
    )
    assert account.patients == 100 and account.max_images_per_patient == 3
    assert account.delta <= 1 / 100
    assert account.epsilon <= 4.0 + 0.05
    assert account.noise_multiplier > 0.3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in trained.modules())
    logits = trained(torch.from_numpy(records.images[:5]))
    assert logits.shape == (5, 2) and torch.isfinite(logits).all()
    with pytest.raises(VetError):
        train_private(ModelFactory(width=4)(), records, 0, DpSettings(delta=0.5, epochs=1))


# ---------------------------------------------------------------- memorization


def _noisy(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images / 255.0 + rng.normal(0, sigma, images.shape), 0, 1).astype(np.float32)


def test_memorization_flags_copies_not_fresh_images() -> None:
    with np.load(FIXTURE) as data:
        train, holdout = data["train_images"][:600], data["train_images"][600:1200]
        fresh = data["test_images"][:150]  # real images the generator never saw
    settings = MemorizationSettings(
        embeddings=(Embedding.PIXEL, Embedding.SSIM, Embedding.ENCODER), encoder_epochs=1
    )
    copies = memorization(_noisy(train[:150], 0.05, 1), train, holdout, settings=settings)
    assert copies.near_copy_share >= 0.95
    assert not copies.passed
    assert copies.dcr_closer_to_train > 0.9
    assert copies.patients_copied >= 0.95 * 150 / 600
    unseen = memorization(fresh, train, holdout, settings=settings)
    assert unseen.near_copy_share <= 0.05
    assert unseen.passed
    card = unseen.to_card()
    assert len(card["image_pairs"]["Closest synthetic / training pairs"]) == 8
    with pytest.raises(VetError):
        memorization(fresh, train, holdout[:10], settings=settings)


# ---------------------------------------------------------------- CLI


SPEC = """
from radguard.vet import ModelFactory, Recipe, load_npz, Records
model_factory = ModelFactory(width=4)
train_fn = Recipe(epochs=2, threads=1)
def dataset():
    return load_npz({fixture!r}, "train", limit=240)
"""


def test_cli_mia_writes_card_and_exit_code(tmp_path: Path) -> None:
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC.format(fixture=str(FIXTURE)))
    out = tmp_path / "card"
    # A limit no attack can meet: the card is written and the exit code is 1.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "radguard.cli",
            "vet",
            "mia",
            "--spec",
            str(spec),
            "--out",
            str(out),
            "--references",
            "2",
            "--workers",
            "2",
            "--max-auc",
            "0.0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1, run.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["settings"]["execution"] == "2 spawned processes"
    assert card["verdict"] == "fail" and out.with_suffix(".html").is_file()
    assert {c["check"] for c in card["checks"]} >= {"rmia-online: AUC", "loss: AUC"}
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    run = subprocess.run(
        [sys.executable, "-m", "radguard.cli", "vet", "mia", "--spec", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "model_factory" in run.stderr


def test_card_is_recorded_in_the_governance_ledger(tmp_path: Path) -> None:
    from radguard.govern import KeyKind, new_signing_key, open_ledger
    from radguard.vet.cli import record_card

    new_signing_key(KeyKind.LEDGER)  # under the test's own RADGUARD_HOME
    card = {
        "kind": "memorization",
        "verdict": "fail",
        "checks": [{"check": "near-copy share", "value": 0.5, "limit": 0.05, "passed": False}],
    }
    json_path, _ = write_card(card, tmp_path / "card")
    ledger = str(tmp_path / "ledger.sqlite")
    assert record_card(card, json_path, None) is None  # no site ledger yet: nothing recorded
    index = record_card(card, json_path, ledger)
    with open_ledger(ledger, write=False) as opened:
        entry = opened.entry(index)
        assert opened.verify().ok
    assert entry["kind"] == "model-privacy-card" and entry["verdict"] == "fail"
    assert entry["card_sha256"] == hashlib.sha256(json_path.read_bytes()).hexdigest()


def _segmenter() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.GroupNorm(2, 8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 2, 3, padding=1),
    )


def test_mia_runs_on_a_segmenter() -> None:
    """Pr(y|x) of a segmenter is exp(-mean pixel cross-entropy); masks: lung-field threshold."""
    records = _fixture(200)
    masks = records.images[:, 0] > np.median(records.images, axis=(1, 2, 3))[:, None, None]
    seg = vet.Records(records.images, masks.astype(np.int64), records.patients, records.groups)
    assert seg.is_segmentation
    report = mia(
        _segmenter,
        Recipe(epochs=2),
        seg,
        MiaSettings(references=1, attacks=(Attack.LOSS, Attack.RMIA_ONLINE), workers=1),
        test=seg.subset(np.arange(20)),
    )
    card = report.to_card()
    assert card["utility"]["target_test_auc"] is None  # no classifier AUC for a segmenter
    scores = np.asarray(card["per_record"]["scores"]["rmia-online"])
    assert np.isfinite(scores).all() and len(scores) == card["data"]["audited_records"]


def test_train_dp_audits_the_model_it_returns(tmp_path: Path) -> None:
    records = _fixture(240)
    test = load_npz(FIXTURE, "test", limit=100)
    audit = MiaSettings(references=2, attacks=(Attack.LOSS, Attack.RMIA_ONLINE), workers=1)
    result = vet.train_dp(
        ModelFactory(width=4),
        records,
        DpSettings(target_epsilon=2.0, epochs=1, batch_patients=32, accountant="rdp"),
        test=test,
        audit=audit,
    )
    assert result.account.epsilon <= 2.05 and result.account.patients == len(
        result.audit.members.nonzero()[0]
    )
    card = result.to_card()
    assert card["kind"] == "dp-training" and "rmia-online" in card["metrics"]
    assert card["checks"][0]["check"] == "delta <= 1/N patients" and card["checks"][0]["passed"]
    _, html = write_card(card, tmp_path / "dp")
    assert "<svg" in html.read_text()
