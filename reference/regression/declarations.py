"""Declaring a black-box loss: which points it takes, and which pairs it treats as positives and negatives.

docs/REGRESSION.md, "Declaring a loss", lists every field. The conventions:

- two-view batch, ``loss(z0, z1)`` with ``z0, z1`` of shape (N, D): sample ``i``'s two views are
  points ``i`` and ``N + i``. ``symmetric``: both views serve as anchors (SimCLR) or only ``z0``
  (one-directional). ``same_view_negatives``: anchor ``i``'s negatives include the other samples'
  points of its own view (SimCLR) or only those of the other view.
- per-anchor, ``loss(query, positive, negatives)``: the N queries, the N positives and the negatives,
  shared (``negative_mode="unpaired"``, (M, D)) or per query (``"paired"``, (N, H, D)).

``reduction`` says what the loss returns: the mean over anchors, their sum, or (``"none"``) one value per
anchor. ``reference="infonce"`` declares the loss to be NT-Xent/InfoNCE at ``temperature``: per anchor
``-log softmax(-r/tau)`` at the positive, i.e. ``L_nce^tau / tau`` (docs/THEORY.md §4), with ``r = 1 - cos``
when ``normalises``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import PairLoss, checked_loss_values, pair_distance

FORMS = ("two_view", "per_anchor")

REDUCTIONS = ("mean", "sum", "none")

NEGATIVE_MODES = ("unpaired", "paired")

REFERENCES = (None, "infonce")

@dataclass(frozen=True)
class Layout:
    """Where the probe's points go in the loss call, and which pairs the loss declares.

    ``anchors (A,)``, ``positives (A,)`` and ``negatives (A, H)`` index the ``n_points`` stacked points;
    ``groups (n_points,)`` gives each point's sample (a positive pair shares one).
    """

    form: str
    n_samples: int
    n_points: int
    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    groups: torch.Tensor
    neg_shape: tuple[int, ...] = ()

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stacked points (n_points, D) -> the loss's arguments."""
        n = self.n_samples
        if self.form == "two_view":
            return z[:n], z[n:]
        return z[:n], z[n:2 * n], z[2 * n:].reshape(*self.neg_shape, z.shape[-1])

    def join(self, *args: torch.Tensor) -> torch.Tensor:
        """The loss's arguments -> stacked points (n_points, D); the inverse of ``split``."""
        return torch.cat([a.reshape(-1, a.shape[-1]) for a in args])

    def roles(self) -> torch.Tensor:
        """(n, n) symmetric: +1 on declared positive pairs, -1 on declared negatives, 0 elsewhere."""
        roles = torch.zeros(self.n_points, self.n_points, dtype=torch.long)
        anchor_col = self.anchors[:, None].expand_as(self.negatives)
        for rows, cols, sign in ((self.anchors, self.positives, 1), (anchor_col, self.negatives, -1)):
            roles[rows, cols] = sign
            roles[cols, rows] = sign
        return roles

def _two_view_layout(n: int, symmetric: bool, same_view_negatives: bool) -> Layout:
    points = torch.arange(2 * n)
    anchors = points if symmetric else points[:n]
    sample, view = anchors % n, anchors // n
    others = torch.stack([torch.cat([points[:j], points[j + 1:n]]) for j in range(n)])   # (N, N-1) samples != j
    negatives = others[sample] + n * (1 - view)[:, None]                                 # other view
    if same_view_negatives:
        negatives = torch.cat([negatives, others[sample] + n * view[:, None]], dim=1)
    return Layout("two_view", n, 2 * n, anchors, (anchors + n) % (2 * n), negatives, points % n)

def _per_anchor_layout(n: int, mode: str, n_negatives: int) -> Layout:
    queries = torch.arange(n)
    if mode == "unpaired":
        negatives, neg_shape = (2 * n + torch.arange(n_negatives)).expand(n, n_negatives), (n_negatives,)
    else:
        negatives, neg_shape = 2 * n + torch.arange(n * n_negatives).reshape(n, n_negatives), (n, n_negatives)
    n_neg_points = negatives.unique().numel()
    groups = torch.cat([queries, queries, n + torch.arange(n_neg_points)])
    return Layout("per_anchor", n, 2 * n + n_neg_points, queries, n + queries, negatives, groups, neg_shape)

@dataclass(frozen=True)
class LossAdapter:
    """A black-box loss and its declaration (see the module docstring)."""

    fn: Callable[..., torch.Tensor]
    form: str = "two_view"
    symmetric: bool = True
    same_view_negatives: bool = True
    negative_mode: str = "unpaired"
    n_negatives: int = 4
    reduction: str = "mean"
    normalises: bool = False
    reference: str | None = None
    temperature: float | None = None
    temperature_kwarg: str | None = None
    dim: int | None = None
    name: str = ""

    def __post_init__(self):
        checks = (("form", self.form, FORMS), ("reduction", self.reduction, REDUCTIONS),
                  ("negative_mode", self.negative_mode, NEGATIVE_MODES), ("reference", self.reference, REFERENCES))
        for what, value, allowed in checks:
            if value not in allowed:
                raise BadInput(f"loss declaration: {what}={value!r} is not one of {allowed}")
        if not callable(self.fn):
            raise BadInput(f"loss declaration: fn must be callable, got {type(self.fn).__name__}")
        if self.reference is not None and not (self.temperature is not None and float(self.temperature) > 0):
            raise BadInput(f"loss declaration: reference={self.reference!r} needs a positive temperature, "
                           f"got {self.temperature!r}")
        if self.form == "per_anchor":
            object.__setattr__(self, "symmetric", False)   # one query per anchor: one-directional by construction
        if int(self.n_negatives) < 1:
            raise BadInput(f"loss declaration: n_negatives must be >= 1, got {self.n_negatives}")

    def layout(self, n_samples: int) -> Layout:
        if n_samples < 2:
            raise BadInput(f"a batch needs at least 2 samples, got {n_samples}")
        if self.form == "two_view":
            return _two_view_layout(n_samples, self.symmetric, self.same_view_negatives)
        return _per_anchor_layout(n_samples, self.negative_mode, int(self.n_negatives))

    def evaluate(self, z: torch.Tensor, layout: Layout) -> torch.Tensor:
        """The loss on stacked points: a scalar, or (A,) per-anchor values when ``reduction="none"``."""
        value = self.fn(*layout.split(z))
        if not isinstance(value, torch.Tensor):
            raise BadInput(f"loss '{self.name}' returned {type(value).__name__}, expected a tensor")
        expected = (layout.anchors.numel(),) if self.reduction == "none" else ()
        if value.numel() == 1 and not expected:
            return value.reshape(())
        if tuple(value.shape) != expected:
            raise BadInput(f"loss '{self.name}' returned shape {tuple(value.shape)}; its declaration "
                           f"reduction={self.reduction!r} means shape {expected}")
        return value

    def describe(self) -> str:
        if self.form == "two_view":
            shape = (f"two-view, {'symmetric' if self.symmetric else 'one-directional'}, "
                     f"{'with' if self.same_view_negatives else 'without'} same-view negatives")
        else:
            shape = f"per-anchor, {self.negative_mode} negatives (H={self.n_negatives})"
        ref = f", declared {self.reference}(tau={self.temperature:g})" if self.reference else ""
        return f"{shape}, reduction={self.reduction}, normalises={self.normalises}{ref}"

DECLARATION_FIELDS = tuple(f.name for f in dataclasses.fields(LossAdapter) if f.name not in ("fn", "name"))

def two_view(fn: Callable, **declares) -> LossAdapter:
    """Declare ``fn(z0, z1)``: a two-view batch loss."""
    return LossAdapter(fn, form="two_view", **declares)

def per_anchor(fn: Callable, **declares) -> LossAdapter:
    """Declare ``fn(query, positive, negatives)``: a per-anchor loss; ``symmetric`` is always False."""
    return LossAdapter(fn, form="per_anchor", **declares)

def anchor_distances(layout: Layout, z: torch.Tensor, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_+ (A,), r_- (A, H)) per anchor; r = 1/2||z_i - z_j||^2, of the unit rows (= 1 - cos) if ``normalise``."""
    if normalise:
        z = nn.functional.normalize(z, dim=-1)
    r = pair_distance(z[:, None, :], z[None, :, :])
    return r[layout.anchors, layout.positives], r[layout.anchors[:, None], layout.negatives]

def reduce_anchors(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"mean": values.mean, "sum": values.sum, "none": lambda: values}[reduction]()

def anchor_weight(layout: Layout, reduction: str) -> float:
    """The factor each anchor's loss carries in the returned total: 1/A for a mean, else 1."""
    return 1.0 / layout.anchors.numel() if reduction == "mean" else 1.0

@dataclass(frozen=True)
class PairLossBatch:
    """A ``PairLoss`` of THEORY.md §4 evaluated over a batch laid out as ``declaration`` says, times ``scale``."""

    pair_loss: PairLoss
    declaration: LossAdapter
    scale: float = 1.0

    def values(self, layout: Layout, z: torch.Tensor) -> torch.Tensor:
        r_pos, r_neg = anchor_distances(layout, z, self.declaration.normalises)
        return self.scale * checked_loss_values(self.pair_loss, r_pos, r_neg)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        layout = self.declaration.layout(args[0].shape[0])
        return reduce_anchors(self.values(layout, layout.join(*args)), self.declaration.reduction)

@dataclass(frozen=True)
class NetAdapter:
    """What a network factory may return: the module and the shape of one input (without the batch)."""

    net: nn.Module
    input_shape: tuple[int, ...]
    name: str = ""
