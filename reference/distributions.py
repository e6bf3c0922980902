"""Exact discrete data x augmentation distributions, and the enumerated expected loss (docs/THEORY.md §6-7).

A distribution holds N samples, each with M augmented views and their probabilities:
``p(sample i) = sample_probs[i]``, ``p(view m | sample i) = aug_probs[i, m]``. Positive pairs are two
views drawn iid from one sample (so x1 = x2 can happen); each negative is a view of an independently
drawn sample (so x' = x can happen unless ``exclude_self``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import autograd_weights, checked_loss_values, pair_distance
from dualnet_ssl.seeding import derive_seed, make_generator

MAX_ENUMERATED_TUPLES = 20_000_000
"""Largest number of (anchor, positive, negatives) tuples enumerated at once (memory guard)."""


@dataclass(frozen=True)
class DiscreteAugmentedData:
    views: torch.Tensor         # (N, M, *input_shape)
    aug_probs: torch.Tensor     # (N, M), rows sum to 1
    sample_probs: torch.Tensor  # (N,), sums to 1

    def __post_init__(self):
        n, m = self.views.shape[:2]
        if self.aug_probs.shape != (n, m) or self.sample_probs.shape != (n,):
            raise BadInput(f"views {tuple(self.views.shape)} need aug_probs ({n}, {m}) and sample_probs ({n},), got "
                           f"{tuple(self.aug_probs.shape)} and {tuple(self.sample_probs.shape)}")
        for name, probs, dim in (("aug_probs", self.aug_probs, 1), ("sample_probs", self.sample_probs, 0)):
            if (probs < 0).any() or not torch.allclose(probs.sum(dim), torch.ones((), dtype=probs.dtype)):
                raise BadInput(f"{name} must be non-negative and sum to 1 along dim {dim}")
        if not torch.isfinite(self.views).all():
            raise BadInput("views contain non-finite values")

    @property
    def n_samples(self) -> int:
        return self.views.shape[0]

    @property
    def n_augmentations(self) -> int:
        return self.views.shape[1]

    def flat_views(self) -> torch.Tensor:
        """All N*M views as one batch, sample-major."""
        return self.views.reshape(-1, *self.views.shape[2:])

    def view_probs(self) -> torch.Tensor:
        """Marginal probability of each flat view, (N*M,)."""
        return (self.sample_probs[:, None] * self.aug_probs).reshape(-1)

    def negative_view_probs(self, exclude_self: bool = False) -> torch.Tensor:
        """P(negative view v | anchor sample i), (N, N*M); with ``exclude_self`` the anchor's sample is excluded."""
        n, m = self.aug_probs.shape
        sample = self.sample_probs[None, :].expand(n, n)
        if exclude_self:
            if n < 2:
                raise BadInput("excluding self-negatives needs at least 2 samples")
            sample = sample * (1 - torch.eye(n, dtype=sample.dtype, device=sample.device))
            sample = sample / sample.sum(1, keepdim=True)
        return (sample[:, :, None] * self.aug_probs[None]).reshape(n, n * m)

    def to(self, device) -> "DiscreteAugmentedData":
        return DiscreteAugmentedData(self.views.to(device), self.aug_probs.to(device), self.sample_probs.to(device))


def gaussian_augmented(n_samples: int, n_augmentations: int, input_shape, sigma: float, *, seed: int,
                       dtype=torch.float64, device="cpu") -> DiscreteAugmentedData:
    """N standard-normal samples, each with M equally likely views x + sigma * eps (eps fixed by the seed).

    The base samples and the noise draws depend only on the seed, so sweeping ``sigma`` rescales the
    same augmentation pattern.
    """
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    g = make_generator(seed)
    base = torch.randn(n_samples, 1, *shape, generator=g, dtype=torch.float64)
    noise = torch.randn(n_samples, n_augmentations, *shape, generator=g, dtype=torch.float64)
    views = (base + float(sigma) * noise).to(dtype=dtype, device=device)
    aug = torch.full((n_samples, n_augmentations), 1.0 / n_augmentations, dtype=dtype, device=device)
    samples = torch.full((n_samples,), 1.0 / n_samples, dtype=dtype, device=device)
    return DiscreteAugmentedData(views, aug, samples)


def random_probabilities(data: DiscreteAugmentedData, *, seed: int, samples: bool = True) -> DiscreteAugmentedData:
    """The same views with random, non-uniform probabilities (log-normal weights, normalised; seeded).

    Augmentation probabilities always, sample probabilities unless ``samples=False``. With uniform
    probabilities a wrong weighting (an unweighted mean, uniform pair mass) cancels; here it cannot.
    """
    def draw(shape, purpose):
        g = make_generator(derive_seed(seed, purpose))
        weights = torch.randn(*shape, generator=g, dtype=torch.float64).exp()
        return (weights / weights.sum(-1, keepdim=True)).to(dtype=data.aug_probs.dtype, device=data.aug_probs.device)

    aug = draw(data.aug_probs.shape, "augmentation probabilities")
    sample = draw(data.sample_probs.shape, "sample probabilities") if samples else data.sample_probs
    return DiscreteAugmentedData(data.views, aug, sample)


def view_outputs(net, data: DiscreteAugmentedData) -> torch.Tensor:
    """f_L of every view, shape (N, M, n_L)."""
    n, m = data.aug_probs.shape
    return net(data.flat_views()).reshape(n, m, -1)


def view_pair_distances(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """r between views, from outputs (N, M, n_L): (within-sample r[i, a, b] (N, M, M), r[i, a, v] to every
    flat view v (N, M, N*M))."""
    n, m = outputs.shape[:2]
    flat = outputs.reshape(n * m, -1)
    r_all = pair_distance(flat[:, None, :], flat[None, :, :]).reshape(n, m, n, m)
    idx = torch.arange(n, device=outputs.device)
    return r_all[idx, :, idx, :], r_all.reshape(n, m, n * m)


@dataclass
class EnumeratedLoss:
    expected: torch.Tensor          # E[L], differentiable through the outputs
    pair_mass: torch.Tensor | None  # A[i, j] = E[sum_k beta_k 1{anchor i, negative k from sample j}], (N, N)


def enumerate_loss(data: DiscreteAugmentedData, outputs: torch.Tensor, loss, n_negatives: int = 1,
                   exclude_self: bool = False, with_pair_mass: bool = True) -> EnumeratedLoss:
    """E[L] over every (anchor, positive, H negatives) tuple, exactly, and the pair mass of Theorem 4.

    ``outputs`` are f_L of the views, shape (N, M, n_L). ``loss(r_pos, r_neg)`` acts elementwise with
    ``r_neg`` of shape (..., H). The pair mass uses autograd weights, so it works for any loss of r;
    ``with_pair_mass=False`` skips it (a plain training step needs E[L] only).
    """
    n, m = data.aug_probs.shape
    if outputs.dim() != 3 or outputs.shape[:2] != (n, m):
        raise BadInput(f"outputs must have shape ({n}, {m}, n_L), got {tuple(outputs.shape)}")
    if n_negatives < 1:
        raise BadInput(f"need at least one negative, got H = {n_negatives}")
    n_views = n * m
    n_tuples = n * m * m * n_views ** n_negatives
    if n_tuples > MAX_ENUMERATED_TUPLES:
        raise BadInput(f"enumerating {n_tuples} tuples (N={n}, M={m}, H={n_negatives}) exceeds "
                       f"{MAX_ENUMERATED_TUPLES}; use fewer samples, augmentations or negatives")
    r_pos, r_neg_views = view_pair_distances(outputs)              # (N, M, M), (N, M, V)
    combos = torch.cartesian_prod(*[torch.arange(n_views, device=outputs.device)] * n_negatives)
    combos = combos.reshape(-1, n_negatives)                       # (C, H)
    r_neg = r_neg_views[:, :, combos]                              # (N, M, C, H)
    r_pos_b = r_pos[:, :, :, None].expand(n, m, m, combos.shape[0])
    r_neg_b = r_neg[:, :, None].expand(n, m, m, *combos.shape)
    neg_probs = data.negative_view_probs(exclude_self)[:, combos].prod(-1)   # (N, C)
    probs = (data.sample_probs[:, None, None, None] * data.aug_probs[:, :, None, None]
             * data.aug_probs[:, None, :, None] * neg_probs[:, None, None, :])
    expected = (probs * checked_loss_values(loss, r_pos_b, r_neg_b)).sum()
    if not with_pair_mass:
        return EnumeratedLoss(expected, None)
    _, beta_neg = autograd_weights(loss, r_pos_b, r_neg_b)          # (N, M, M, C, H)
    mass = (probs[..., None] * beta_neg).sum((1, 2))               # (N, C, H)
    sample_of = torch.nn.functional.one_hot(combos // m, n).to(mass.dtype)   # (C, H, N)
    pair_mass = torch.einsum("ick,ckj->ij", mass, sample_of)
    return EnumeratedLoss(expected, pair_mass)


def augmentation_only_feature(n_samples: int, dim: int, amplitude: float, *, seed: int, dtype=torch.float64,
                              device="cpu") -> DiscreteAugmentedData:
    """Coordinate 0 varies only under augmentation: every sample has x[0] = 0 and its two equally likely
    views are x +- amplitude e_0; the other coordinates vary only across samples (docs/THEORY.md §6)."""
    base = torch.randn(n_samples, 1, dim, generator=make_generator(seed), dtype=torch.float64)
    base[..., 0] = 0.0
    shift = torch.zeros(1, 2, dim, dtype=torch.float64)
    shift[0, :, 0] = torch.tensor([amplitude, -amplitude], dtype=torch.float64)
    views = (base + shift).to(dtype=dtype, device=device)
    aug = torch.full((n_samples, 2), 0.5, dtype=dtype, device=device)
    return DiscreteAugmentedData(views, aug, torch.full((n_samples,), 1.0 / n_samples, dtype=dtype, device=device))


def views_as_samples(data: DiscreteAugmentedData) -> DiscreteAugmentedData:
    """The same views with every view its own sample (no augmentation): V[K] over views instead of V[Kbar]."""
    flat = data.flat_views()
    one = torch.ones(flat.shape[0], 1, dtype=data.aug_probs.dtype, device=flat.device)
    return DiscreteAugmentedData(flat[:, None], one, data.view_probs())
