"""Digits as views for the BYOL / SimSiam study (docs/THEORY.md §9; dualnet_ssl.byol_dynamics).

Flat 64-vectors of scikit-learn's digits, augmented with this package's real augmentations (``data.augment``) at
one strength; the probe trains on 600 training images and tests on 597 held-out ones.
"""
from __future__ import annotations

from dualnet_ssl.byol_dynamics import ViewData
from dualnet_ssl.digits.data import augment, draw_augmentations, load_digits, split_indices
from dualnet_ssl.seeding import derive_seed

BYOL_STRENGTH = 0.5
"""Augmentation strength of the study (s in [0, 1], docs/DIGITS.md)."""


def digits_views(seed: int, strength: float = BYOL_STRENGTH) -> ViewData:
    """Training images, the probe's labelled split (from ``derive_seed(seed, "digits split")``) and the views."""
    digits = load_digits()
    train_idx, test_idx = split_indices(len(digits.labels), 597, seed=derive_seed(seed, "digits split"))
    probe_train = train_idx[:600]

    def views(x, generator):
        images = x.reshape(-1, 8, 8)
        return augment(images, draw_augmentations(images.shape[0], generator), strength,
                       digits.max_intensity).flatten(1)

    flat = digits.images.flatten(1)
    return ViewData(flat[train_idx], flat[probe_train], digits.labels[probe_train], flat[test_idx],
                    digits.labels[test_idx], views)
