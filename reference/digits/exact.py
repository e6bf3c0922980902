"""Real digits as an exact distribution: N images x M augmentations, drawn once, enumerated (docs/THEORY.md §6-7).

The empirical distribution of the drawn views is a ``DiscreteAugmentedData`` with uniform probabilities, so
Theorems 3 and 4 hold on it exactly and the suite's checkers apply unchanged. The images and the augmentation
draw depend only on the seed, so a sweep over the strength ``s`` rescales one fixed augmentation pattern.
"""
from __future__ import annotations

import statistics

import torch
from torch import nn

from dualnet_ssl.checks import loglog_slope, residue_ratio_sweep
from dualnet_ssl.digits.data import SIZE, augment, draw_augmentations, load_digits
from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.errors import BadInput
from dualnet_ssl.seeding import derive_seed, make_generator


def empirical_distribution(n_samples: int, n_augmentations: int, s: float, *, seed: int, image_shape: bool = False,
                           indices: torch.Tensor | None = None, dtype=torch.float64,
                           device="cpu") -> DiscreteAugmentedData:
    """N real digits (seeded choice, or ``indices``) x M real augmentations at strength ``s``, uniform weights.

    Views are flat (N, M, 64) for an MLP, or (N, M, 1, 8, 8) with ``image_shape`` for a conv net.
    """
    digits = load_digits()
    if n_samples < 1 or n_augmentations < 1:
        raise BadInput(f"need N >= 1 samples and M >= 1 augmentations, got N={n_samples}, M={n_augmentations}")
    if indices is None:
        indices = torch.randperm(len(digits.labels), generator=make_generator(derive_seed(seed, "images")))
    indices = indices[:n_samples]
    if len(indices) < n_samples:
        raise BadInput(f"asked for {n_samples} samples, only {len(indices)} indices given")
    draw = draw_augmentations(n_samples * n_augmentations, make_generator(derive_seed(seed, "augmentations")))
    base = digits.images[indices].repeat_interleave(n_augmentations, 0)
    views = augment(base, draw, s, digits.max_intensity)
    shape = (n_samples, n_augmentations) + ((1, SIZE, SIZE) if image_shape else (SIZE * SIZE,))
    views = views.reshape(shape).to(dtype=dtype, device=device)
    aug = torch.full((n_samples, n_augmentations), 1.0 / n_augmentations, dtype=dtype, device=device)
    return DiscreteAugmentedData(views, aug, torch.full((n_samples,), 1.0 / n_samples, dtype=dtype, device=device))


def strength_sweep(make_net, name: str, loss, strengths, seeds, *, n_samples: int, n_augmentations: int,
                   n_negatives: int = 1, image_shape: bool = False) -> dict:
    """||theta|| / ||2 OP w|| against s for each seed (one net and one image/augmentation draw per seed).

    ``make_net(seed)`` builds the network; ``image_shape`` gives it (N, M, 1, 8, 8) views (a conv net).
    Returns the per-seed sweeps (as ``residue_ratio_sweep``), the per-seed fitted exponents and their mean and sd.
    """
    sweeps = []
    for seed in seeds:
        net: nn.Module = make_net(derive_seed(seed, "net"))

        def make_data(s, seed=seed):
            return empirical_distribution(n_samples, n_augmentations, s, seed=seed, image_shape=image_shape)

        sweeps.append(residue_ratio_sweep(net, name, make_data, loss, strengths, n_negatives=n_negatives))
    exponents = [sw["exponent"] for sw in sweeps]
    return {"strengths": list(strengths), "sweeps": sweeps, "exponents": exponents,
            "exponent_mean": statistics.mean(exponents),
            "exponent_sd": statistics.stdev(exponents) if len(exponents) > 1 else 0.0,
            "mean_ratios": [statistics.mean(sw["ratios"][i] for sw in sweeps) for i in range(len(strengths))],
            "pooled_exponent": loglog_slope([s for _ in sweeps for s in strengths],
                                            [r for sw in sweeps for r in sw["ratios"]])}
