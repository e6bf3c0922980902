"""The probe: points given by a Gram matrix, and a loss's pair weights read off by autograd (docs/THEORY.md §5a).

Choose an SPD Gram matrix G of the n points a loss call needs, embed them as ``Z = cholesky(G)`` padded with
zero columns to ``D >= n``, evaluate the loss and take autograd with respect to G. Because
``r_ij = (G_ii + G_jj)/2 - G_ij``, a loss of pairwise distances has ``dL/dr_ij = -2 sym(dL/dG)_ij`` (i != j):
the weight of every pair, found without knowing the loss's internals. On unit rows (``G_ii = 1``) the same
formula gives ``dL/dr_ij`` with ``r = 1 - cos``, the distance a normalising loss sees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dualnet_ssl.errors import BadInput, NotApplicable
from dualnet_ssl.losses import infonce_weights
from dualnet_ssl.regression.declarations import Layout, LossAdapter, anchor_distances, anchor_weight
from dualnet_ssl.seeding import make_generator


PROBE_SAMPLES = {"two_view": 6, "per_anchor": 4}
"""Samples N per probe: 12 points for a two-view batch; 4 queries + 4 positives + negatives per anchor."""


POSITIVE_NOISE = 1.0
"""A positive pair's points are c + POSITIVE_NOISE * e (c, e standard normal): cos about 0.5 against the
negatives' 0 +- 0.3, so hard negatives exist and margin losses are active on some triplets."""


TEMPERATURE_SPREAD = 2.0
"""When a loss declares its temperature tau, the probe's structure is scaled by TEMPERATURE_SPREAD sqrt(tau)
(at most 1), so r / tau (or cos / tau) differs by a few units between pairs and no pair's weight underflows."""


@dataclass(frozen=True)
class Probe:
    """n points given by their Gram matrix, embedded in ``dim >= n`` columns."""

    layout: Layout
    gram: torch.Tensor
    dim: int
    seed: int

    def points(self, gram: torch.Tensor | None = None) -> torch.Tensor:
        """Z = cholesky(G), padded with zero columns to ``dim``: rows are the points, Z Z^T = G."""
        lower = torch.linalg.cholesky(self.gram if gram is None else gram)
        return nn.functional.pad(lower, (0, self.dim - lower.shape[1]))


def fitting_layout(adapter: LossAdapter, n_points_max: int | None, n_samples: int) -> Layout:
    """The probe layout with the most samples (at most ``n_samples``) whose points fit in ``n_points_max``."""
    for n in range(n_samples, 1, -1):
        layout = adapter.layout(n)
        if n_points_max is None or layout.n_points <= n_points_max:
            return layout
    raise NotApplicable(f"pair weights are identifiable only with at least as many embedding dimensions as points; "
                        f"{n_points_max} dimensions are fewer than the {adapter.layout(2).n_points} points of the "
                        "smallest batch (2 samples)")


def make_probe(adapter: LossAdapter, seed: int, dtype: torch.dtype = torch.float64,
               n_samples: int | None = None) -> Probe:
    """Points with positives nearer each other than negatives, spread over about one temperature; for a loss that
    normalises, unit rows with cosines around 0. ``n_samples`` (default ``PROBE_SAMPLES``) sets the batch size."""
    layout = fitting_layout(adapter, adapter.dim, n_samples or PROBE_SAMPLES[adapter.form])
    n = layout.n_points
    g = make_generator(seed)
    centres = torch.randn(int(layout.groups.max()) + 1, n, generator=g, dtype=torch.float64)
    noise = torch.randn(n, n, generator=g, dtype=torch.float64)
    z = (centres[layout.groups] + POSITIVE_NOISE * noise) / math.sqrt(n * (1 + POSITIVE_NOISE ** 2))
    spread = 1.0 if adapter.temperature is None else min(1.0, TEMPERATURE_SPREAD * math.sqrt(adapter.temperature))
    if adapter.normalises:
        # nearly orthogonal unit rows (cos about 0, as for random embeddings) plus the structure above
        z = nn.functional.normalize(torch.eye(n, dtype=torch.float64) + spread * nn.functional.normalize(z, dim=1),
                                    dim=1)
    else:
        z = spread * z * (0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64))
    return Probe(layout, (z @ z.T).to(dtype), max(n, adapter.dim or 0), seed)


@dataclass(frozen=True)
class PairWeights:
    value: torch.Tensor                  # the loss at the probe: scalar, or (A,) per anchor
    pairs: torch.Tensor                  # (n, n) symmetric, zero diagonal: dL/dr_ij
    per_anchor: torch.Tensor | None      # (A, n, n): dL_a/dr_ij, when the loss returns per-anchor values


def pair_weights_from_gram_gradient(grad: torch.Tensor) -> torch.Tensor:
    """dL/dr_ij = -2 sym(dL/dG)_ij off the diagonal (r_ij = (G_ii + G_jj)/2 - G_ij); zero diagonal."""
    weights = -(grad + grad.T)
    return weights - torch.diag(torch.diagonal(weights))


def recover_weights(adapter: LossAdapter, probe: Probe, per_anchor: bool = False) -> PairWeights:
    """The loss's value and its weight dL/dr on every pair of the probe, by autograd through cholesky(G);
    with ``per_anchor`` (and a loss declared reduction='none') also each anchor's own weights."""
    gram = probe.gram.detach().clone().requires_grad_(True)
    value = adapter.evaluate(probe.points(gram), probe.layout)
    if not value.requires_grad:
        raise BadInput("the loss's value does not depend differentiably on its inputs (no autograd graph)")

    def weights_of(scalar: torch.Tensor) -> torch.Tensor:
        (grad,) = torch.autograd.grad(scalar, gram, retain_graph=True, allow_unused=True)
        return pair_weights_from_gram_gradient(torch.zeros_like(gram) if grad is None else grad)

    anchors = torch.stack([weights_of(v) for v in value]) if per_anchor and adapter.reduction == "none" else None
    return PairWeights(value.detach(), weights_of(value.sum()), anchors)


def assemble_pair_weights(layout: Layout, beta: torch.Tensor, beta_k: torch.Tensor, scale: float) -> torch.Tensor:
    """(n, n) dL/dr_ij from per-anchor weights: ``scale * beta_a`` on (a, positive), ``-scale * beta_ak`` on
    (a, negative k), summed over the anchors that share a pair (THEORY.md §5 sign convention)."""
    weights = torch.zeros(layout.n_points, layout.n_points, dtype=beta.dtype)
    weights.index_put_((layout.anchors, layout.positives), scale * beta, accumulate=True)
    weights.index_put_((layout.anchors[:, None].expand_as(layout.negatives), layout.negatives), -scale * beta_k,
                       accumulate=True)
    return weights + weights.T


def reference_pair_weights(adapter: LossAdapter, layout: Layout, z: torch.Tensor) -> torch.Tensor:
    """dL/dr_ij of the declared NT-Xent/InfoNCE (L_nce^tau / tau per anchor) in closed form (THEORY.md §5)."""
    tau = float(adapter.temperature)
    beta, beta_k = infonce_weights(*anchor_distances(layout, z, adapter.normalises), tau=tau)
    return assemble_pair_weights(layout, beta, beta_k, anchor_weight(layout, adapter.reduction) / tau)
