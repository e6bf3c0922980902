"""A catalogue of subtle NT-Xent bugs and of correct variants, shared by the regression-mode tests.

``nt_xent(z0, z1, tau=..., bug=...)`` is SimCLR's NT-Xent over 2N anchors with at most one bug switched on.
Every mutant in ``MUTATIONS`` keeps the correct loss's declaration (SimCLR layout, cosine, mean, NT-Xent at
tau); only its code is wrong, and it must fail the property listed for it. Every entry of ``CORRECT`` is the
same loss written another correct way (chunked, upcast, masked with a large negative, ...) and must pass
everything. ``DECLARED`` pairs a loss with a declaration it contradicts, or with the one it fits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dualnet_ssl.regression import LossSubject, per_anchor, two_view

POSITIVE_PULL = 0.5
"""Strength of the extra pull on positives (the official code's beta != 0 option, docs/THEORY.md §5)."""

CHUNK = 32
"""Rows (or columns) per chunk in the chunked variants: one chunk at N <= 16, several at N = 19 and 64."""

MAX_NEGATIVES = 100
"""The cap of the capped-negatives mutant: no cap at N <= 51 (2N - 2 negatives), a cap at N = 64."""

MUTATIONS = {
    "self_unmasked": "balance_total",             # self-similarity left in the softmax
    "wrong_diagonal": "weight_signs",             # positives taken from the wrong diagonal
    "temperature_twice": "reference_value",       # logits divided by tau twice
    "tau_multiplies": "reference_value",          # logits multiplied by tau instead of divided
    "tau_on_positive_only": "balance_total",      # -pos/tau + logsumexp(sim): tau misplaced
    "detached_negatives": "gradient_symmetry",    # negatives' similarities detached
    "detached_denominator": "balance_total",      # the whole log-sum-exp detached
    "blockwise_logsumexp": "reference_value",     # one log-sum-exp per block of negatives
    "sum_not_mean": "reference_value",            # sum over anchors where the adapter declares mean
    "extra_logit": "balance_total",               # a constant extra logit in the denominator
    "positive_twice": "reference_value",          # the positive's logit twice in the denominator (balanced!)
    "positive_pull": "balance_total",             # an extra pull on positives only
    "off_by_one_mask": "balance_total",           # the mask on (i, i+1) instead of (i, i)
    "label_smoothing": "reference_value",         # cross_entropy(label_smoothing=0.1), mask -1e9
    "anchor_reweighting": "reference_value",      # each anchor's positive reweighted (balanced in total only)
    "dot_product": "pairwise_structure",          # unnormalised dot product in a loss that claims cosine
    "normalise_columns": "pairwise_structure",    # F.normalize over the batch instead of the features
    "no_max_subtraction": "stability_float32",    # exp of logits without subtracting the maximum
    "softmax_then_log": "stability_float32",      # -log(softmax(.)[pos]): inf once the share underflows float32
    "half_precision": "stability_float32",        # similarities in float16 when given float32
    "bfloat16": "stability_float32",              # similarities in bfloat16 when given float32
    # "float32_clamp" (exp clamped to the dtype's max) saturates only where 1/tau > 88: theorems/test_regression_verdicts.py
    # checks it at a declared tau of 0.5 (non-finite on the nearly aligned points at 0.01) and of 0.01.
    "chunked_mask": "balance_total",              # later row chunks mask the wrong column (only at N > 16)
    "chunked_logsumexp": "reference_value",       # column chunks' log-sum-exps added, not combined (N > 16)
    "capped_negatives": "declared_pairs",         # at most MAX_NEGATIVES negatives per anchor (N = 64)
    "mean_over_capped_count": "reference_value",  # sum / min(2N, 64) instead of the mean
    "nan_value": "weight_signs",                  # NaN returned
}

CORRECT = ("plain", "chunked_rows", "upcast_float32", "large_negative_mask", "manual_logsumexp")


def _logits(z: torch.Tensor, tau: float, bug: str | None) -> torch.Tensor:
    if bug in ("half_precision", "bfloat16") and z.dtype == torch.float32:
        low = torch.float16 if bug == "half_precision" else torch.bfloat16
        return (z.to(low) @ z.to(low).T).float() / tau
    sim = z @ z.T
    if bug == "tau_multiplies":
        return sim * tau
    return sim / tau / (tau if bug == "temperature_twice" else 1.0)


def _mask(logits: torch.Tensor, bug: str | None) -> torch.Tensor:
    m = logits.shape[0]
    eye = torch.eye(m, dtype=torch.bool)
    if bug == "self_unmasked":
        return logits
    if bug == "off_by_one_mask":
        return logits.masked_fill(torch.roll(eye, 1, dims=1), float("-inf"))
    if bug in ("label_smoothing", "large_negative_mask"):
        return logits.masked_fill(eye, -1e9)
    if bug in ("chunked_mask", "chunked_rows"):
        rows = []
        for start in range(0, m, CHUNK):
            block = logits[start:start + CHUNK]
            idx = torch.arange(block.shape[0])
            cols = idx if bug == "chunked_mask" else idx + start          # the bug: the chunk's offset forgotten
            rows.append(block.index_put((idx, cols), torch.tensor(float("-inf"), dtype=block.dtype)))
        return torch.cat(rows)
    return logits.masked_fill(eye, float("-inf"))


def _per_anchor(logits: torch.Tensor, positive: torch.Tensor, bug: str | None) -> torch.Tensor:
    m = logits.shape[0]
    pos = logits[torch.arange(m), positive]
    if bug == "label_smoothing":
        return F.cross_entropy(logits, positive, reduction="none", label_smoothing=0.1)
    if bug == "no_max_subtraction":
        return -(pos.exp() / logits.exp().sum(1)).log()
    if bug == "float32_clamp":
        big = torch.finfo(logits.dtype).max
        return -(pos.exp().clamp(max=big) / logits.exp().clamp(max=big).sum(1)).log()
    if bug == "softmax_then_log":
        return -logits.softmax(1)[torch.arange(m), positive].log()
    if bug == "manual_logsumexp":
        top = logits.max(1, keepdim=True).values.detach()
        return -pos + top[:, 0] + (logits - top).exp().sum(1).log()
    if bug == "extra_logit":
        logits = torch.cat([logits, torch.zeros(m, 1, dtype=logits.dtype)], dim=1)
    if bug == "positive_twice":
        logits = torch.cat([logits, pos[:, None]], dim=1)
    if bug == "detached_denominator":
        return -pos + logits.detach().logsumexp(1)
    if bug == "chunked_logsumexp":
        parts = torch.stack([c.logsumexp(1) for c in logits.split(CHUNK, dim=1)], dim=1)
        return -pos + parts.sum(1)                                     # the bug: add, not logsumexp, the parts
    if bug == "capped_negatives":
        keep = torch.ones_like(logits, dtype=torch.bool)
        keep[torch.arange(m), positive] = False
        negs = logits[keep].reshape(m, m - 1)                          # still holds the (masked) self column
        return -pos + torch.cat([pos[:, None], negs[:, :MAX_NEGATIVES + 1]], dim=1).logsumexp(1)
    return F.cross_entropy(logits, positive, reduction="none")


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, *, tau: float, bug: str | None = None) -> torch.Tensor:
    """SimCLR's NT-Xent over 2N anchors with at most one bug of MUTATIONS (or one correct variant of CORRECT)."""
    n = z0.shape[0]
    dtype = z0.dtype
    z = torch.cat([z0, z1])
    if bug == "upcast_float32":
        z = z.double()
    if bug == "normalise_columns":
        z = F.normalize(z, dim=0)
    elif bug != "dot_product":
        z = F.normalize(z, dim=1)
    pair = torch.arange(2 * n)
    positive = (pair + n + (1 if bug == "wrong_diagonal" else 0)) % (2 * n)
    logits = _logits(z, tau, bug)
    if bug == "detached_negatives":
        keep = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
        keep[pair, (pair + n) % (2 * n)] = True
        logits = torch.where(keep, logits, (z @ z.detach().T) / tau)
    if bug == "tau_on_positive_only":
        unscaled = _mask(z @ z.T, bug)
        per = -unscaled[pair, positive] / tau + unscaled.logsumexp(1)
    elif bug == "blockwise_logsumexp":
        masked = _mask(logits, bug)
        same_view = (pair[:, None] // n) == (pair[None, :] // n)
        other = torch.zeros_like(same_view)
        other[pair, positive] = True
        per = 0.5 * sum(F.cross_entropy(masked.masked_fill(block, float("-inf")), positive, reduction="none")
                        for block in (same_view, ~same_view & ~other))
    else:
        per = _per_anchor(_mask(logits, bug), positive, bug)
    if bug == "positive_pull":
        per = per + POSITIVE_PULL * (1 - (z @ z.T)[pair, positive])
    if bug == "anchor_reweighting":   # each anchor's positive term times c_i (mean 1, from detached similarities)
        c = 2 * n * torch.softmax((z @ z.T)[pair, positive].detach(), 0)
        per = per - (c - 1) * logits[pair, positive]
    if bug == "mean_over_capped_count":
        loss = per.sum() / min(2 * n, 64)
    else:
        loss = per.sum() if bug == "sum_not_mean" else per.mean()
    if bug == "nan_value":
        loss = loss + float("nan")
    return loss.to(dtype)


def mutant(bug: str | None, tau: float, strict_float32: bool = True) -> LossSubject:
    """The loss with ``bug`` under the correct loss's declaration, rebuildable at another temperature. Declared
    ``strict_float32`` by default: the catalogue's float32 mutants (no maximum subtracted, a two-step
    -log(softmax), a clamped exp) are accurate at tau = 0.5 and wrong only below it, which is their point, and
    the correct variants are held to float32 accuracy on the whole grid; ``strict_float32=False`` is the
    user's default policy (a finding below the declared tau, not a failure)."""
    def factory(temperature: float):
        return two_view(lambda z0, z1: nt_xent(z0, z1, tau=temperature, bug=bug), normalises=True,
                        reference="infonce", temperature=temperature, temperature_kwarg="temperature",
                        strict_float32=strict_float32, name=f"nt_xent[{bug or 'correct'}]")
    return LossSubject(f"nt_xent[{bug or 'correct'}](tau={tau:g})", factory, {"temperature": tau})


# ---- declarations against the loss they describe --------------------------------------------------------

def one_directional(z0: torch.Tensor, z1: torch.Tensor, tau: float = 0.2, same_view: bool = False) -> torch.Tensor:
    """InfoNCE with z0 as the only anchors: negatives the other samples' z1 (and z0 with ``same_view``)."""
    q, k = F.normalize(z0, dim=1), F.normalize(z1, dim=1)
    logits = q @ k.T / tau
    if same_view:
        self_sim = (q @ q.T / tau).masked_fill(torch.eye(q.shape[0], dtype=torch.bool), float("-inf"))
        logits = torch.cat([logits, self_sim], dim=1)
    return F.cross_entropy(logits, torch.arange(q.shape[0]))


def cross_view_symmetric(z0: torch.Tensor, z1: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """Both directions of one-directional InfoNCE: cross-view negatives only (no same-view negatives)."""
    return 0.5 * (one_directional(z0, z1, tau) + one_directional(z1, z0, tau))


def reweighted_queries(q: torch.Tensor, p: torch.Tensor, negs: torch.Tensor, tau: float = 0.2,
                       bug: bool = True) -> torch.Tensor:
    """Per-anchor InfoNCE (shared negatives); with ``bug`` each query's positive term is reweighted by c_i, mean 1
    (from detached similarities): balanced over the batch, not per anchor."""
    q, p, negs = F.normalize(q, dim=1), F.normalize(p, dim=1), F.normalize(negs, dim=1)
    pos = (q * p).sum(1) / tau
    logits = torch.cat([pos[:, None], q @ negs.T / tau], dim=1)
    per = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long), reduction="none")
    if bug:
        c = q.shape[0] * torch.softmax(pos.detach(), 0)
        per = per - (c - 1) * pos
    return per.mean()


def _subject(name: str, fn, maker=two_view, **declares) -> LossSubject:
    return LossSubject(name, lambda: maker(fn, normalises=True, name=name, **declares))


DECLARED = {   # name: (subject, the property that must fail, or None when the declaration fits)
    "one_directional_declared_simclr": (_subject("one_directional_declared_simclr", one_directional),
                                        "declared_pairs"),
    "one_directional_declared_symmetric": (_subject("one_directional_declared_symmetric", one_directional,
                                                    same_view_negatives=False), "declared_pairs"),
    "one_directional_same_view_declared_simclr": (
        _subject("one_directional_same_view_declared_simclr", lambda a, b: one_directional(a, b, same_view=True)),
        "declared_pairs"),
    "cross_view_declared_same_view": (_subject("cross_view_declared_same_view", cross_view_symmetric),
                                      "declared_pairs"),
    "cross_view_declared_one_directional": (_subject("cross_view_declared_one_directional", cross_view_symmetric,
                                                     symmetric=False, same_view_negatives=False),
                                            "balance_per_anchor"),
    "reweighted_queries": (_subject("reweighted_queries", reweighted_queries, per_anchor),
                           "balance_per_anchor"),
    "one_directional_fits": (_subject("one_directional_fits", one_directional, symmetric=False,
                                      same_view_negatives=False), None),
    "one_directional_same_view_fits": (
        _subject("one_directional_same_view_fits", lambda a, b: one_directional(a, b, same_view=True),
                 symmetric=False), None),
    "cross_view_fits": (_subject("cross_view_fits", cross_view_symmetric, same_view_negatives=False), None),
    "queries_fit": (_subject("queries_fit", lambda q, p, n: reweighted_queries(q, p, n, bug=False), per_anchor),
                    None),
}


# ---- float32 causes below the declared temperature (stability_float32's findings, issue 18) ---------------

class SupConLoss(torch.nn.Module):
    """HobbitLong's SupContrast ``SupConLoss`` as published (contrast_mode="all"): features [N, V, D] of unit rows,
    labels (N,) or None; ``-(tau / base_tau) * mean_{p} log_prob`` per anchor. Its maximum subtracted includes the
    masked self-similarity, so in float32 it goes NaN at tau = 0.01 on points far from every anchor: correct at
    the temperatures it is used at, a finding below them."""

    def __init__(self, temperature: float = 0.07, base_temperature: float = 0.07):
        super().__init__()
        self.temperature, self.base_temperature = temperature, base_temperature

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        batch, views = features.shape[0], features.shape[1]
        labels = torch.arange(batch) if labels is None else labels
        mask = torch.eq(labels.view(-1, 1), labels.view(1, -1)).float()
        contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
        anchor_dot_contrast = torch.div(contrast @ contrast.T, self.temperature)
        logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)      # the self-similarity included
        logits = anchor_dot_contrast - logits_max.detach()
        mask = mask.repeat(views, views)
        logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(batch * views).view(-1, 1), 0)
        mask = mask * logits_mask
        exp_logits = torch.exp(logits) * logits_mask
        log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
        mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
        loss = -(self.temperature / self.base_temperature) * mean_log_prob_pos
        return loss.view(views, batch).mean()


def capped_log_share(z0: torch.Tensor, z1: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent as ``-log(p + finfo(dtype).tiny)`` of the positive's softmax share p (pytorch-metric-learning's
    NTXentLoss does this): in float32 the log saturates at log(tiny) once p < 1.2e-38, and its gradient vanishes."""
    n = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    logits = (z @ z.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    share = logits.softmax(1)[torch.arange(2 * n), (torch.arange(2 * n) + n) % (2 * n)]
    return -(share + torch.finfo(share.dtype).tiny).log().mean()


def float32_subject(fn, tau: float, name: str, **declares) -> LossSubject:
    """A two-view NT-Xent-layout loss ``fn(z0, z1, tau)`` declared at ``tau``, rebuildable at another temperature."""
    def factory(temperature: float):
        return two_view(lambda z0, z1: fn(z0, z1, temperature), normalises=True, reference="infonce",
                        temperature=temperature, temperature_kwarg="temperature", name=name, **declares)
    return LossSubject(f"{name}(tau={tau:g})", factory, {"temperature": tau})
