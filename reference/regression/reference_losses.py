"""Reference-loss arithmetic: pair distances, per-anchor reductions, and a ``PairLoss`` as a batch loss.

``gram_distances`` is the one place r is read from a Gram matrix G of the points (docs/THEORY.md §5a):
``r_ij = (G_ii + G_jj)/2 - G_ij = 1/2 ||z_i - z_j||^2``, or ``1 - cos`` on unit rows. ``anchor_distances`` reads
each anchor's ``r_+`` and ``r_-`` from the points themselves (docs/THEORY.md §4).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dualnet_ssl.losses import PairLoss, checked_loss_values, pair_distance
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.signatures import Layout, samples_in


def cosines(gram: torch.Tensor) -> torch.Tensor:
    """cos_ij = G_ij / sqrt(G_ii G_jj): the Gram matrix of the points' unit rows."""
    d = torch.diagonal(gram).sqrt()
    return gram / (d[:, None] * d[None, :])


def gram_distances(gram: torch.Tensor, unit_rows: bool = False) -> torch.Tensor:
    """r_ij from the Gram matrix: (G_ii + G_jj)/2 - G_ij, or 1 - cos_ij with ``unit_rows`` (a loss that
    normalises its inputs, or whose caller does)."""
    if unit_rows:
        return 1.0 - cosines(gram)
    d = torch.diagonal(gram)
    return (d[:, None] + d[None, :]) / 2 - gram


def anchor_distances(layout: Layout, z: torch.Tensor, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_+, r_- (A, H)) per anchor, r_+ of shape (A,) with one positive per anchor and (A, P) with several;
    r = 1/2||z_i - z_j||^2, of the unit rows (= 1 - cos) if ``normalise``."""
    if normalise:
        z = nn.functional.normalize(z, dim=-1)
    r = pair_distance(z[:, None, :], z[None, :, :])
    anchors = layout.anchors[:, None]
    r_pos = r[anchors, layout.positives]
    return r_pos[:, 0] if r_pos.shape[1] == 1 else r_pos, r[anchors, layout.negatives]


def reduce_anchors(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"mean": values.mean, "sum": values.sum, "none": lambda: values}[reduction]()


def anchor_weight(layout: Layout, reduction: str) -> float:
    """The factor each anchor's loss carries in the returned total: 1/A for a mean, else 1."""
    return 1.0 / layout.anchors.numel() if reduction == "mean" else 1.0


@dataclass(frozen=True)
class PairLossBatch:
    """A ``PairLoss`` of docs/THEORY.md §4 evaluated over a batch laid out as ``declaration`` says, times ``scale``."""

    pair_loss: PairLoss
    declaration: LossAdapter
    scale: float = 1.0

    def values(self, layout: Layout, z: torch.Tensor) -> torch.Tensor:
        r_pos, r_neg = anchor_distances(layout, z, self.declaration.on_unit_rows)
        return self.scale * checked_loss_values(self.pair_loss, r_pos, r_neg)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        layout = self.declaration.layout(samples_in(self.declaration.form, args, self.declaration.n_views))
        return reduce_anchors(self.values(layout, layout.join(*args)), self.declaration.reduction)
