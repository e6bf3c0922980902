"""The three losses of docs/THEORY.md §4 as functions of pair distances, and their closed-form weights (§5).

Convention: ``r_pos`` has shape ``(...)`` and ``r_neg`` shape ``(..., H)``; a loss returns shape ``(...)``.
Weights: ``beta = dL/dr_+`` and ``beta_k = -dL/dr_k-`` (Theorem 2: beta > 0, beta_k > 0, beta = sum_k beta_k).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from dualnet_ssl.errors import BadInput


def pair_distance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """r(x1, x2) = 1/2 ||f_L(x1) - f_L(x2)||^2 over the last dimension (docs/THEORY.md §3)."""
    if z1.shape[-1] != z2.shape[-1]:
        raise BadInput(f"output dimensions differ: {z1.shape[-1]} vs {z2.shape[-1]}")
    return 0.5 * ((z1 - z2) ** 2).sum(-1)


def simple_loss(r_pos: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
    """L_simp = r_+ - (1/H) sum_k r_k-."""
    return r_pos - r_neg.mean(-1)


def triplet_loss(r_pos: torch.Tensor, r_neg: torch.Tensor, *, tau: float, margin: float) -> torch.Tensor:
    """L_tri = tau log(1 + exp((r_+ - r_- + r_0) / tau)), H = 1."""
    if r_neg.shape[-1] != 1:
        raise BadInput(f"the soft Triplet loss takes exactly one negative (H = 1), got H = {r_neg.shape[-1]}")
    z = (r_pos - r_neg[..., 0] + margin) / tau
    # log(1 + e^z) exactly; torch's softplus switches to z itself above z = 20, whose gradient 1 then
    # differs from sigmoid(z) by up to 2e-9 and breaks Theorem 2's closed form at float64 precision.
    return tau * torch.logaddexp(z, torch.zeros_like(z))


def infonce_loss(r_pos: torch.Tensor, r_neg: torch.Tensor, *, tau: float) -> torch.Tensor:
    """L_nce = -tau log[e^{-r_+/tau} / (e^{-r_+/tau} + sum_k e^{-r_k-/tau})], stable log-sum-exp form."""
    logits = torch.cat([-r_pos[..., None], -r_neg], dim=-1) / tau
    return r_pos + tau * torch.logsumexp(logits, dim=-1)


def simple_weights(r_pos, r_neg):
    """beta = 1, beta_k = 1/H."""
    h = r_neg.shape[-1]
    return torch.ones_like(r_pos), torch.full_like(r_neg, 1.0 / h)


def triplet_weights(r_pos, r_neg, *, tau, margin):
    """beta = beta_1 = sigmoid((r_+ - r_- + r_0) / tau)."""
    beta = torch.sigmoid((r_pos - r_neg[..., 0] + margin) / tau)
    return beta, beta[..., None]


def infonce_weights(r_pos, r_neg, *, tau):
    """beta_k = e^{-r_k-/tau} / Z, beta = 1 - e^{-r_+/tau} / Z."""
    probs = torch.softmax(torch.cat([-r_pos[..., None], -r_neg], dim=-1) / tau, dim=-1)
    return 1.0 - probs[..., 0], probs[..., 1:]


@dataclass(frozen=True)
class PairLoss:
    """A loss of (r_+, r_1-, ..., r_H-) with its closed-form Theorem 2 weights and parameters."""

    name: str
    value_fn: Callable
    weights_fn: Callable | None = None
    params: dict = field(default_factory=dict)
    max_negatives: int | None = None

    def __call__(self, r_pos: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
        return self.value_fn(r_pos, r_neg, **self.params)

    def weights(self, r_pos: torch.Tensor, r_neg: torch.Tensor):
        if self.weights_fn is None:
            raise BadInput(f"loss '{self.name}' has no closed-form weights")
        return self.weights_fn(r_pos, r_neg, **self.params)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name}({args})"


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0 or value != value or value == float("inf"):
        raise BadInput(f"{name} must be a positive finite number, got {value}")
    return value


def simple() -> PairLoss:
    return PairLoss("simp", simple_loss, simple_weights)


def triplet(tau: float = 1.0, margin: float = 0.0) -> PairLoss:
    return PairLoss("triplet", triplet_loss, triplet_weights,
                    {"tau": _positive("tau", tau), "margin": float(margin)}, max_negatives=1)


def infonce(tau: float = 1.0) -> PairLoss:
    return PairLoss("infonce", infonce_loss, infonce_weights, {"tau": _positive("tau", tau)})


def checked_loss_values(loss: Callable, r_pos: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
    """loss(r_pos, r_neg), refused with ``BadInput`` unless it is a finite tensor of one value per tuple."""
    value = loss(r_pos, r_neg)
    if not isinstance(value, torch.Tensor):
        raise BadInput(f"loss returned {type(value).__name__}, expected a tensor")
    if value.shape != r_pos.shape:
        raise BadInput(f"loss returned shape {tuple(value.shape)}; expected one value per (r_+, r_-) tuple, "
                       f"shape {tuple(r_pos.shape)}")
    if not torch.isfinite(value).all():
        raise BadInput(f"loss returned {int((~torch.isfinite(value)).sum())} non-finite values (NaN/inf)")
    return value


def autograd_weights(loss: Callable, r_pos: torch.Tensor, r_neg: torch.Tensor):
    """(dL/dr_+, -dL/dr_k-) by autograd, elementwise over the leading dims."""
    r_pos = r_pos.detach().clone().requires_grad_(True)
    r_neg = r_neg.detach().clone().requires_grad_(True)
    value = checked_loss_values(loss, r_pos, r_neg)
    d_pos, d_neg = torch.autograd.grad(value.sum(), (r_pos, r_neg), allow_unused=True)
    d_pos = torch.zeros_like(r_pos) if d_pos is None else d_pos
    d_neg = torch.zeros_like(r_neg) if d_neg is None else d_neg
    return d_pos, -d_neg
