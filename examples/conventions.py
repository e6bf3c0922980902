"""Losses written the way public SSL codebases write them, one per worked declaration of docs/REGRESSION.md
("Ready signatures"). Each is a class or function the suite is pointed at from the command line, with no code of
the suite's; theorems/test_regression_conventions.py runs every worked command of the docs verbatim on them.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def simclr_loss_func(z: torch.Tensor, indexes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """solo-learn's ``simclr_loss_func`` (one process, no gather): views concatenated, one index per row; rows with
    the same index are positives, summed inside the log (InfoNCE with one positive, the "in" form with several)."""
    z = F.normalize(z, dim=-1)
    sim = torch.exp(torch.einsum("if, jf -> ij", z, z) / temperature)
    indexes = indexes.unsqueeze(0)
    pos_mask = indexes.t() == indexes
    pos_mask.fill_diagonal_(0)
    neg_mask = indexes.t() != indexes
    pos = torch.sum(sim * pos_mask, 1)
    neg = torch.sum(sim * neg_mask, 1)
    return -(torch.mean(torch.log(pos / (pos + neg))))


class SupConLoss(torch.nn.Module):
    """HobbitLong's SupCon: features [batch, n_views, D] normalised by the caller, labels [batch]; the "out" form,
    scaled by temperature / base_temperature."""

    def __init__(self, temperature: float = 0.07, base_temperature: float = 0.07):
        super().__init__()
        self.temperature, self.base_temperature = temperature, base_temperature

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        batch, n_views = features.shape[:2]
        labels = torch.arange(batch) if labels is None else labels
        mask = (labels[:, None] == labels[None, :]).to(features.dtype).repeat(n_views, n_views)
        contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
        logits = contrast @ contrast.T / self.temperature
        logits_mask = 1.0 - torch.eye(batch * n_views, dtype=features.dtype)
        logits = logits - logits.masked_fill(logits_mask == 0, -torch.inf).max(dim=1, keepdim=True).values.detach()
        mask = mask * logits_mask
        log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True))
        mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
        return (-(self.temperature / self.base_temperature) * mean_log_prob_pos).mean()


def logits_and_labels(z: torch.Tensor, n_views: int = 2, temperature: float = 0.5):
    """A function returning (logits, labels) for a cross-entropy: views concatenated, each row's positive logit in
    column 0 and its negatives after it (SimCLR's `info_nce_loss` of several codebases)."""
    z = F.normalize(z, dim=-1)
    index = torch.arange(len(z) // n_views).repeat(n_views)
    keep = ~torch.eye(len(z), dtype=torch.bool)
    sim = (z @ z.T)[keep].reshape(len(z), -1)
    same = (index[:, None] == index[None, :])[keep].reshape(len(z), -1)
    logits = torch.cat([sim[same].reshape(len(z), -1), sim[~same].reshape(len(z), -1)], dim=1) / temperature
    return logits, torch.zeros(len(z), dtype=torch.long)


class MoCoLoss(torch.nn.Module):
    """MoCo's contrastive loss as its reference code computes it: q and k are normalised here, k is detached here,
    and the queue (D, K) holds unit columns already (it was filled with normalised keys), used as stored."""

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        self.temperature = temperature

    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        q = F.normalize(q, dim=1)
        k = F.normalize(k, dim=1).detach()
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", q, queue.detach())
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


class MemoryBankLoss(torch.nn.Module):
    """Instance discrimination with a memory bank (M, D) of unit rows, stored normalised and detached here: row
    ``indexes[i]`` is sample i's positive, every other row a negative."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, z: torch.Tensor, indexes: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(z, dim=1) @ bank.detach().T / self.temperature
        return F.cross_entropy(logits, indexes)


def bank_negatives(q: torch.Tensor, k: torch.Tensor, bank: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """A two-view loss with a memory bank of negatives: live query and key, the bank (M, D) detached by its caller."""
    q, k, bank = (F.normalize(t, dim=-1) for t in (q, k, bank))
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ bank.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def simclr_loss(temperature: float = 0.1):
    """The factory named on the command line: ``simclr_loss_func`` at ``temperature``."""
    return functools.partial(simclr_loss_func, temperature=temperature)


def info_nce_logits(n_views: int = 2, temperature: float = 0.5):
    """The factory for ``logits_and_labels``."""
    return functools.partial(logits_and_labels, n_views=n_views, temperature=temperature)


def bank_negatives_loss(temperature: float = 0.5):
    """The factory for ``bank_negatives``."""
    return functools.partial(bank_negatives, temperature=temperature)
