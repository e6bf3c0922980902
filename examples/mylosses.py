"""An example user package: a SimCLR NT-Xent loss written the way many codebases write it.

Point the suite at it without editing the suite (docs/REGRESSION.md):

    pytest theorems/test_regression.py --ssl-loss examples.mylosses:make_loss \\
        --ssl-loss-kwargs '{"temperature": 0.2}' --ssl-report report.json

``make_buggy_loss`` is the same loss with one classic bug (the self-similarity left in the softmax);
the suite flags it as not balanced.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dualnet_ssl.regression import two_view


class NTXent(torch.nn.Module):
    """SimCLR's loss: 2N anchors, each view's positive is the other view of its sample, all other
    2N - 2 points are negatives, cosine similarity over a temperature, mean over anchors."""

    def __init__(self, temperature: float = 0.5, mask_self: bool = True):
        super().__init__()
        self.temperature = temperature
        self.mask_self = mask_self

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        n = z0.shape[0]
        z = F.normalize(torch.cat([z0, z1]), dim=1)
        logits = z @ z.T / self.temperature
        if self.mask_self:
            logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return F.cross_entropy(logits, targets)


def make_loss(temperature: float = 0.5):
    """The adapter: which pairs are positives and negatives, what it claims (cosine, NT-Xent at tau)."""
    return two_view(NTXent(temperature), symmetric=True, same_view_negatives=True, reduction="mean",
                    normalises=True, reference="infonce", temperature=temperature, temperature_kwarg="temperature")


def make_buggy_loss(temperature: float = 0.5):
    """The same declaration around a loss that forgets to mask the self-similarity."""
    return two_view(NTXent(temperature, mask_self=False), symmetric=True, same_view_negatives=True,
                    reduction="mean", normalises=True, reference="infonce", temperature=temperature,
                    temperature_kwarg="temperature")
