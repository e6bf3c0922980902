"""Small exact cases shared by the training tests (not tests themselves): random non-uniform data and a
brute-force twin of E[r_+], E[r_-] (docs/THEORY.md §6)."""
from __future__ import annotations

import torch

from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.losses import pair_distance
from dualnet_ssl.seeding import make_generator

F64 = torch.float64


PASSING_SEED = 0
"""Seed of the reference run the rejection tests perturb (one of the seeds the thresholds were measured on; the
theorem tests assert on held-out seeds)."""


def tiny_case(seed: int, n: int = 3, m: int = 3, n_out: int = 2):
    """Random outputs and non-uniform probabilities, so that a wrong weighting cannot cancel by symmetry.
    m = 3 augmentations: with m = 2 a factor 2/m is 1 and would go unseen."""
    g = make_generator(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=F64) + 0.1
    aug, samples = rand(n, m), rand(n)
    data = DiscreteAugmentedData(torch.randn(n, m, 1, generator=g, dtype=F64),
                                 aug / aug.sum(1, keepdim=True), samples / samples.sum())
    return data, torch.randn(n, m, n_out, generator=g, dtype=F64)


def brute_force_pair_distances(data, outputs, exclude_self):
    """(E[r_+], E[r_-]) as plain nested sums over anchors, views and negatives (docs/THEORY.md §6)."""
    n, m = data.aug_probs.shape
    p, q = data.sample_probs.tolist(), data.aug_probs.tolist()
    r = lambda i, a, j, b: float(pair_distance(outputs[i, a], outputs[j, b]))
    r_pos = r_neg = 0.0
    for i in range(n):
        others = sum(p[j] for j in range(n) if j != i) if exclude_self else 1.0
        for a in range(m):
            for b in range(m):
                r_pos += p[i] * q[i][a] * q[i][b] * r(i, a, i, b)
            for j in range(n):
                if exclude_self and j == i:
                    continue
                for b in range(m):
                    r_neg += p[i] * q[i][a] * p[j] / others * q[j][b] * r(i, a, j, b)
    return torch.tensor(r_pos, dtype=F64), torch.tensor(r_neg, dtype=F64)
