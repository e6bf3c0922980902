"""The probe: a loss's pair weights read off by autograd at points given by a Gram matrix (``geometry``;
docs/THEORY.md §5a).

Choose an SPD Gram matrix G of the n points a loss call needs, embed them as ``Z = cholesky(G)`` padded with
zero columns to ``D >= n``, evaluate the loss and take autograd with respect to G. Because
``r_ij = (G_ii + G_jj)/2 - G_ij``, a loss of pairwise distances has ``dL/dr_ij = -2 sym(dL/dG)_ij`` (i != j):
the weight of every pair, found without knowing the loss's internals. On unit rows (``G_ii = 1``) the same
formula gives ``dL/dr_ij`` with ``r = 1 - cos``, the distance a normalising loss sees. Under a declared
stop-gradient the weights are read from each live point's gradient instead (``flow_from_point_gradients``: one QR
factorisation of the points serves them all).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.declarations import Layout, LossAdapter
from dualnet_ssl.regression.engine import evaluate
from dualnet_ssl.regression.geometry import Probe


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


def _pair_coefficients(z: torch.Tensor, adapter: LossAdapter, unit_points: torch.Tensor | None):
    """Every pair direction dr_ij/dz_i as Z^T times a coefficient vector (docs/THEORY.md §5a): for each point i,
    the constraint row a_i that every combination of its directions satisfies (a_i . c = 0), and the factor
    that turns coefficient c_j into the pair weight, w_ij = -factor_ij c_j.

    - 1/2||z_i - z_j||^2: direction z_i - z_j = Z^T (e_i - e_j); a_i = ones, factor 1.
    - a unit row i, r = 1 - z_i.z_j (``unit_points``; default every point when ``unit_inputs=True``): direction
      -z_j = Z^T (-e_j); a_i = e_i, factor 1.
    - a row the loss normalises, r = 1 - cos: direction -(z_j - (G_ij/G_ii) z_i) / (|z_i||z_j|); a_i = G e_i (the
      direction is orthogonal to z_i), factor |z_i||z_j|.
    """
    n = z.shape[0]
    gram = z @ z.T
    if not adapter.on_unit_rows:
        return torch.ones(n, n, dtype=z.dtype), torch.ones(n, n, dtype=z.dtype)
    if unit_points is None:
        unit_points = torch.full((n,), adapter.unit_inputs is True)
    norm = torch.diagonal(gram).sqrt()
    constraint = torch.where(unit_points[:, None], torch.eye(n, dtype=z.dtype), gram)
    factor = torch.where(unit_points[:, None], torch.ones_like(gram), norm[:, None] * norm[None, :])
    return constraint, factor


def flow_from_point_gradients(grads: torch.Tensor, z: torch.Tensor, adapter: LossAdapter, live: torch.Tensor,
                              unit_points: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Solve dL/dz_i = sum_j w_ij dr_ij/dz_i for every live point i (docs/THEORY.md §5a): D >= n points in
    general position make the n - 1 directions dr_ij/dz_i independent, so the w_ij are determined. ``grads`` is
    (n, D), or (K, n, D) for K scalars at once. Returns the flow, (n, n) or (K, n, n) (row i: the weights in
    dL/dz_i; zero rows for detached points), and the share of the live points' gradient the fit leaves unexplained.

    Each direction is Z^T c with a_i . c = 0 (``_pair_coefficients``), so one QR factorisation Z^T = QR serves every
    point: point i's least-squares fit is y_i = Q^T g_i projected onto the plane b_i . y = 0 (b_i = R^-T a_i), and
    c_i = R^-1 y_i. That is the least-squares solve over point i's n - 1 directions, for n^2 D in all, not per point.
    """
    n, dim = z.shape
    z = z.double()
    g = grads.double().reshape(-1, n, dim)                                                          # (K, n, D)
    q, r = torch.linalg.qr(z.T)                                                                     # (D, n), (n, n)
    if bool((torch.diagonal(r).abs() <= n * torch.finfo(r.dtype).eps * r.abs().max()).any()):
        raise torch.linalg.LinAlgError(f"the {n} points are linearly dependent, so their pair weights are not "
                                       "determined by the gradients")
    constraint, factor = _pair_coefficients(z, adapter, unit_points)
    b = torch.linalg.solve_triangular(r.T, constraint.T, upper=False).T                            # (n, n): b_i
    y = g @ q                                                                                       # (K, n, n): y_i
    y = y - b * (y * b).sum(-1, keepdim=True) / (b * b).sum(-1, keepdim=True)
    c = torch.linalg.solve_triangular(r, y.transpose(1, 2), upper=True).transpose(1, 2)            # (K, n, n): c_i
    unexplained = (g - c @ z)[:, live].norm(dim=2)
    peak = float(g[:, live].norm(dim=2).max()) if bool(live.any()) else 0.0
    flow = -factor * c
    flow = flow - torch.diag_embed(torch.diagonal(flow, dim1=1, dim2=2))
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


ANCHOR_CHUNK = 32
"""Each anchor's own routed weights are solved ANCHOR_CHUNK anchors at a time, so the memory is the (A, n, n) result
plus one chunk's work: at a declared batch of 256 (516 points) about 0.6 GB, where all anchors at once held 3.9 GB."""


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
        anchors = torch.empty(len(value), *flow.shape, dtype=flow.dtype)
        for start in range(0, len(value), ANCHOR_CHUNK):
            part = value[start:start + ANCHOR_CHUNK]
            flows, _ = flow_from_point_gradients(torch.stack([grad_of(v) for v in part]), z.detach(), adapter, live,
                                                 unit)
            anchors[start:start + len(part)] = torch.stack([_routed_pairs(f, adapter, live) for f in flows])
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
