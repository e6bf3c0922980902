"""Example user networks for ``--ssl-model`` (docs/REGRESSION.md).

``make_net`` is in the theorems' class (bias-free linear layers and ReLU); the others are not, and the
suite says "not applicable: <why>" for them rather than passing or failing.
"""
from __future__ import annotations

import torch
from torch import nn


def _built(seed: int, build):
    """Build under a forked global RNG: seeded, reproducible, and the caller's RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def make_net(in_dim: int = 8, hidden: int = 32, out_dim: int = 16, seed: int = 0) -> nn.Module:
    """A bias-free ReLU MLP written with plain nn.Sequential: the input shape is read from the first Linear."""
    return _built(seed, lambda: nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.ReLU(),
                                              nn.Linear(hidden, hidden, bias=False), nn.ReLU(),
                                              nn.Linear(hidden, out_dim, bias=False)))


def make_net_with_bias(in_dim: int = 8, hidden: int = 32, out_dim: int = 16, seed: int = 0) -> nn.Module:
    return _built(seed, lambda: nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)))


def make_net_with_batchnorm(in_dim: int = 8, hidden: int = 32, out_dim: int = 16, seed: int = 0) -> nn.Module:
    return _built(seed, lambda: nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                                              nn.ReLU(), nn.Linear(hidden, out_dim, bias=False)))


class Residual(nn.Module):
    """x + W2 relu(W1 x), then a linear head: bias-free, yet not homogeneous in W1 or W2 (the skip path)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.inner = nn.Linear(in_dim, hidden, bias=False)
        self.outer = nn.Linear(hidden, in_dim, bias=False)
        self.head = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x + self.outer(torch.relu(self.inner(x))))


def make_residual_net(in_dim: int = 8, hidden: int = 32, out_dim: int = 16, seed: int = 0) -> nn.Module:
    return _built(seed, lambda: Residual(in_dim, hidden, out_dim))
