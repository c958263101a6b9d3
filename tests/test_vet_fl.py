"""Gradient inversion, the update defences, and the Flower client mod in a real federation.

The federation is real: a Flower server in the test process and three Flower client
processes talking gRPC on a free loopback port (no Ray, no simulation engine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radguard.vet import Defence, InversionSettings, ModelFactory, gradients, load_npz, write_card
from radguard.vet.flower import run_federation
from radguard.vet.gradients import DEFAULT_DEFENCE, NO_DEFENCE, clip_and_noise, sparsify

FIXTURE = Path(__file__).parent / "data" / "pneumoniamnist-small.npz"
torch.set_num_threads(2)


def test_clip_noise_and_sparsify() -> None:
    rng = np.random.default_rng(0)
    update = [rng.normal(size=(50, 20)).astype(np.float32), rng.normal(size=30).astype(np.float32)]
    clipped = clip_and_noise(update, 1.0, 0.0, rng)
    norm = np.sqrt(sum(float((u**2).sum()) for u in clipped))
    assert abs(norm - 1.0) < 1e-4
    direction = np.concatenate([u.ravel() for u in update])
    assert np.allclose(
        np.concatenate([u.ravel() for u in clipped]) * np.linalg.norm(direction),
        direction,
        atol=1e-4,
    )
    noisy = clip_and_noise(update, 1.0, 0.5, np.random.default_rng(1))
    residual = np.concatenate([(n - c).ravel() for n, c in zip(noisy, clipped, strict=True)])
    assert 0.45 < residual.std() < 0.55
    sparse = sparsify(update, 90.0)
    for original, kept in zip(update, sparse, strict=True):
        assert 0.88 <= (kept == 0).mean() <= 0.92
        survivors = kept != 0
        assert np.abs(original[survivors]).min() >= np.abs(original[~survivors]).max()


def test_inversion_succeeds_at_batch_one_and_default_defence_stops_it(tmp_path: Path) -> None:
    records = load_npz(FIXTURE, "train", limit=50)
    settings = InversionSettings(
        iterations=300,
        batch_sizes=(1,),
        local_steps=(1,),
        trials=1,
        defences=(NO_DEFENCE, DEFAULT_DEFENCE),
    )
    report = gradients(ModelFactory(norm="batch"), records, settings)
    assert report.ssim(NO_DEFENCE) >= 0.5
    assert report.ssim(DEFAULT_DEFENCE) < 0.2
    assert report.passed
    card = report.to_card()
    assert (
        card["verdict"] == "pass" and len(card["image_pairs"]["True image / reconstruction"]) == 2
    )
    _, html = write_card(card, tmp_path / "grad")
    assert "data:image/png;base64," in html.read_text()


def test_flower_mod_applies_the_defence_in_a_real_federation() -> None:
    records = load_npz(FIXTURE, "train", limit=150)
    shards = [records.subset(np.arange(i, 150, 3)) for i in range(3)]
    defence = Defence(clip_norm=0.05, noise_multiplier=0.0, sparsify_percentile=80.0)
    result = run_federation(ModelFactory(width=4), shards, defence, rounds=2)
    assert len(result.updates) == 2
    for round_updates in result.updates:
        assert len(round_updates) == 3
        for update in round_updates:
            flat = np.concatenate([u.ravel() for u in update])
            assert np.linalg.norm(flat) <= 0.05 + 1e-4  # clipped by the mod, seen by the server
            assert (flat == 0).mean() >= 0.75  # sparsified by the mod
    final = np.concatenate([p.ravel() for p in result.parameters])
    assert np.isfinite(final).all()
