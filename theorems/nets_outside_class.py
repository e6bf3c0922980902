"""Networks outside the theorems' class (docs/THEORY.md §1), for tests that the suite refuses them clearly.

Weights come from the seed through ``dualnet_ssl.seeding`` (a local generator), never from torch's global state."""
import torch
from torch import nn

from dualnet_ssl.seeding import make_generator


def _filled(net: nn.Module, seed: int) -> nn.Module:
    """``net`` in float64 with every parameter drawn from N(0, 1) by a generator seeded with ``seed``."""
    net = net.double()
    g = make_generator(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net


def biased_mlp(seed: int) -> nn.Module:
    """4 -> 8 -> 3 with non-zero biases: outside the class for its biases alone."""
    return _filled(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), seed)


class ResidualMLP(nn.Module):
    """f(x) = W2 relu(W1 x) + x: bias-free but not homogeneous in W1 or W2 (the skip path bypasses them)."""

    def __init__(self, seed: int):
        super().__init__()
        g = make_generator(seed)
        self.w1 = nn.Parameter(torch.randn(4, 4, generator=g, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(4, 4, generator=g, dtype=torch.float64))

    def forward(self, x):
        return torch.relu(x @ self.w1.T) @ self.w2.T + x


def batchnorm_mlp(seed: int) -> nn.Module:
    """Bias-free, but with batch normalisation between the layers."""
    layers = nn.Linear(4, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3, bias=False)
    return _filled(nn.Sequential(*layers), seed)
