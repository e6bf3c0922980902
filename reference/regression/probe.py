"""The probe: a loss's pair weights read off by autograd at points given by a Gram matrix (``geometry``;
docs/THEORY.md §5a).

Choose an SPD Gram matrix G of the n points a loss call needs, embed them as ``Z = cholesky(G)`` padded with
zero columns to ``D >= n``, evaluate the loss and take autograd with respect to G. Because
``r_ij = (G_ii + G_jj)/2 - G_ij``, a loss of pairwise distances has ``dL/dr_ij = -2 sym(dL/dG)_ij`` (i != j):
the weight of every pair, found without knowing the loss's internals. On unit rows (``G_ii = 1``) the same
formula gives ``dL/dr_ij`` with ``r = 1 - cos``, the distance a normalising loss sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.declarations import Layout, LossAdapter
from dualnet_ssl.regression.engine import evaluate
from dualnet_ssl.regression.geometry import Probe
from dualnet_ssl.regression.signatures import all_but_one


@dataclass(frozen=True)
class PairWeights:
    value: torch.Tensor                  # the loss at the probe: scalar, or (A,) per anchor
    pairs: torch.Tensor                  # (n, n) symmetric, zero diagonal: dL/dr_ij
    per_anchor: torch.Tensor | None      # (A, n, n): dL_a/dr_ij, when the loss returns per-anchor values
    flow: torch.Tensor | None = None     # (n, n): row i, the weights in dL/dz_i (zero for a detached point)
    residual: float = 0.0                # share of the live points' gradient no pair weight explains


def pair_weights_from_gram_gradient(grad: torch.Tensor) -> torch.Tensor:
    """dL/dr_ij = -2 sym(dL/dG)_ij off the diagonal (r_ij = (G_ii + G_jj)/2 - G_ij); zero diagonal."""
    weights = -(grad + grad.T)
    return weights - torch.diag(torch.diagonal(weights))


def pair_gradients(z: torch.Tensor, adapter: LossAdapter, unit_points: torch.Tensor | None = None,
                   rows: torch.Tensor | None = None) -> torch.Tensor:
    """(n, n, D): entry (i, j) is dr_ij/dz_i for the distance the loss sees: 1/2||z_i - z_j||^2, 1 - z_i.z_j for a
    point i that arrives as a unit row (``unit_points``, default: every point when ``unit_inputs=True``), 1 - cos
    for a point the loss normalises. With ``rows``, only those points i: (len(rows), n, D)."""
    at = z if rows is None else z[rows]
    if not adapter.on_unit_rows:
        return at[:, None, :] - z[None, :, :]
    if unit_points is None:
        unit_points = torch.full((z.shape[0],), adapter.unit_inputs is True)
    at_unit = unit_points if rows is None else unit_points[rows]
    norm = z.norm(dim=1)
    at_norm = norm if rows is None else norm[rows]
    cos = (at @ z.T) / (at_norm[:, None] * norm[None, :])
    normalised = -(z[None, :, :] / (at_norm[:, None, None] * norm[None, :, None]) - cos[:, :, None] * at[:, None, :]
                   / at_norm[:, None, None] ** 2)
    return torch.where(at_unit[:, None, None], -z[None, :, :].expand(at.shape[0], -1, -1), normalised)


def flow_from_point_gradients(grads: torch.Tensor, z: torch.Tensor, adapter: LossAdapter, live: torch.Tensor,
                              unit_points: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Solve dL/dz_i = sum_j w_ij dr_ij/dz_i for every live point i (docs/THEORY.md §5a): D >= n points in
    general position make the n - 1 vectors dr_ij/dz_i independent, so the w_ij are determined. ``grads`` is
    (n, D), or (K, n, D) for K scalars at once. Returns the flow, (n, n) or (K, n, n) (row i: the weights in
    dL/dz_i; zero rows for detached points), and the share of the live points' gradient the fit leaves unexplained."""
    n = z.shape[0]
    others = all_but_one(n)
    basis = pair_gradients(z.double(), adapter, unit_points)[torch.arange(n)[:, None], others]
    basis = basis.transpose(1, 2)                                                                   # (n, D, n-1)
    g = grads.double().reshape(-1, n, z.shape[1]).permute(1, 2, 0)                                  # (n, D, K)
    solution = torch.linalg.lstsq(basis, g).solution                                                # (n, n-1, K)
    unexplained = (g - basis @ solution)[live].norm(dim=1)
    peak = float(g[live].norm(dim=1).max()) if bool(live.any()) else 0.0
    flow = torch.zeros(g.shape[2], n, n, dtype=torch.float64)
    flow[:, torch.arange(n)[:, None], others] = solution.permute(2, 0, 1)
    flow[:, ~live] = 0.0
    return flow.reshape(*grads.shape[:-2], n, n), (float(unexplained.max()) / peak if peak > 0 else 0.0)


def _routed_pairs(flow: torch.Tensor, adapter: LossAdapter, live: torch.Tensor) -> torch.Tensor:
    """Pair weights from the flow: with the gradient into the anchors only, each anchor's terms send their
    weight into the anchor alone, so a pair's weight is the sum of both ends' parts; otherwise each live end
    receives the whole weight, and the live ends' readings are averaged."""
    if adapter.gradient_to == "anchors":
        return flow + flow.T
    ends = live.double()[:, None] + live.double()[None, :]
    return (flow + flow.T) / ends.clamp_min(1.0)


def _routed_weights(adapter: LossAdapter, probe: Probe, per_anchor: bool) -> PairWeights:
    live = probe.layout.live
    z = probe.points().detach().clone().requires_grad_(True)
    value = evaluate(adapter, z, probe.layout)
    if not value.requires_grad:
        raise BadInput("the loss's value does not depend differentiably on its inputs (no autograd graph)")

    def grad_of(scalar: torch.Tensor) -> torch.Tensor:
        (grad,) = torch.autograd.grad(scalar, z, retain_graph=True, allow_unused=True)
        return torch.zeros_like(z) if grad is None else grad

    unit = adapter.unit_points(probe.layout)
    flow, residual = flow_from_point_gradients(grad_of(value.sum()), z.detach(), adapter, live, unit)
    anchors = None
    if per_anchor and adapter.reduction == "none":
        flows, _ = flow_from_point_gradients(torch.stack([grad_of(v) for v in value]), z.detach(), adapter, live,
                                             unit)
        anchors = torch.stack([_routed_pairs(f, adapter, live) for f in flows])
    return PairWeights(value.detach(), _routed_pairs(flow, adapter, live), anchors, flow, residual)


def recover_weights(adapter: LossAdapter, probe: Probe, per_anchor: bool = False) -> PairWeights:
    """The loss's value and its weight dL/dr on every pair of the probe; with ``per_anchor`` (and a loss declared
    reduction='none') also each anchor's own weights. By autograd through cholesky(G) when gradient flows into
    every point; from each live point's gradient when the declaration routes it (docs/THEORY.md §5a)."""
    if adapter.gradient_to == "anchors" or probe.layout.routed:
        return _routed_weights(adapter, probe, per_anchor)
    gram = probe.gram.detach().clone().requires_grad_(True)
    value = evaluate(adapter, probe.points(gram), probe.layout)
    if not value.requires_grad:
        raise BadInput("the loss's value does not depend differentiably on its inputs (no autograd graph)")

    def weights_of(scalar: torch.Tensor) -> torch.Tensor:
        (grad,) = torch.autograd.grad(scalar, gram, retain_graph=True, allow_unused=True)
        return pair_weights_from_gram_gradient(torch.zeros_like(gram) if grad is None else grad)

    anchors = torch.stack([weights_of(v) for v in value]) if per_anchor and adapter.reduction == "none" else None
    pairs = weights_of(value.sum())
    return PairWeights(value.detach(), pairs, anchors, pairs)


def assemble_pair_weights(layout: Layout, beta: torch.Tensor, beta_k: torch.Tensor, scale: float) -> torch.Tensor:
    """(n, n) dL/dr_ij from per-anchor weights: ``scale * beta_a`` on (a, positive), ``-scale * beta_ak`` on
    (a, negative k), summed over the anchors that share a pair (docs/THEORY.md §5 sign convention)."""
    weights = torch.zeros(layout.n_points, layout.n_points, dtype=beta.dtype)
    anchors = layout.anchors[:, None]
    weights.index_put_((anchors.expand_as(layout.positives), layout.positives), scale * beta.reshape(
        layout.positives.shape), accumulate=True)
    weights.index_put_((anchors.expand_as(layout.negatives), layout.negatives), -scale * beta_k, accumulate=True)
    return weights + weights.T
