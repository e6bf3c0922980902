"""Networks outside the theorems' class (docs/THEORY.md §1), for tests that the suite refuses them clearly."""
import torch
from torch import nn


def biased_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)  # nn.Linear's own init; the tests only need some fixed biased net
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()


class ResidualMLP(nn.Module):
    """f(x) = W2 relu(W1 x) + x: bias-free but not homogeneous in W1 or W2 (the skip path bypasses them)."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(4, 4, generator=g, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(4, 4, generator=g, dtype=torch.float64))

    def forward(self, x):
        return torch.relu(x @ self.w1.T) @ self.w2.T + x


def batchnorm_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3, bias=False)).double()
