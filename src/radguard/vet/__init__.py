"""Vet models before deployment: membership inference, memorization, gradient inversion, DP.

The audits take the user's own model factory, training recipe and data, and hand back a
report whose ``to_card()`` is the JSON privacy card (``write_card`` adds the HTML page).
torch, opacus and flwr come with the ``vet`` extra and are imported only when an audit runs.
What each audit measures and how: ``docs/vet.md``.
"""

from radguard.vet.card import render_card_html, write_card
from radguard.vet.data import (
    Records,
    VetError,
    from_arrays,
    group_patients,
    load_npz,
    split_patients,
)
from radguard.vet.dp import DpAccount, DpRecipe, DpResult, DpSettings, train_dp, train_private
from radguard.vet.gradients import (
    Defence,
    GradientReport,
    InversionSettings,
    clip_and_noise,
    gradients,
    invert,
    sparsify,
)
from radguard.vet.memorization import (
    Embedding,
    MemorizationReport,
    MemorizationSettings,
    memorization,
)
from radguard.vet.mia import Attack, MiaPolicy, MiaReport, MiaSettings, mia
from radguard.vet.models import ModelFactory, Recipe, small_cnn
from radguard.vet.parallel import SpecCallable, load_spec

__all__ = [
    "Attack",
    "Defence",
    "DpAccount",
    "DpRecipe",
    "DpResult",
    "DpSettings",
    "Embedding",
    "GradientReport",
    "InversionSettings",
    "MemorizationReport",
    "MemorizationSettings",
    "MiaPolicy",
    "MiaReport",
    "MiaSettings",
    "ModelFactory",
    "Recipe",
    "Records",
    "SpecCallable",
    "VetError",
    "clip_and_noise",
    "from_arrays",
    "gradients",
    "group_patients",
    "invert",
    "load_npz",
    "load_spec",
    "memorization",
    "mia",
    "render_card_html",
    "small_cnn",
    "sparsify",
    "split_patients",
    "train_dp",
    "train_private",
    "write_card",
]
