"""Theorem 3 with sampled batches (docs/THEORY.md §6): per-tuple gradients and the sampled-batch check.

With tuples (anchor, positive, negative) sampled instead of enumerated, the batch gradient g_B of L_simp is
unbiased for g = -2 V[Kbar_l] w_l and E||g_B - g||^2 = tr(Sigma) / B, Sigma the covariance of one tuple's gradient.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev

from dualnet_ssl.checks import loglog_slope
from dualnet_ssl.compare import Context, assert_identity, fail, passed
from dualnet_ssl.connection import _param
from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import pair_distance, simple
from dualnet_ssl.operators import operator_times
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.thresholds import SAMPLED_MIN_POWER, SAMPLED_TRACE_ERROR, Z_SCORE_FALSE_ALARM


def per_tuple_gradients(net: nn.Module, name: str, data: DiscreteAugmentedData, loss: Callable = simple()):
    """Gradient of an H = 1 loss for every (anchor, positive, negative) view tuple, with tuple probabilities.

    Returns (gradients (C, P), probabilities (C,)); C = N M^2 (N M) tuples enumerated.
    """
    n, m = data.aug_probs.shape
    views = data.flat_views()
    v = torch.arange(n * m, device=views.device)
    sample = v // m
    anchor, positive, negative = torch.cartesian_prod(v, v, v).unbind(1)
    keep = sample[anchor] == sample[positive]
    anchor, positive, negative = anchor[keep], positive[keep], negative[keep]
    probs = (data.view_probs()[anchor] * data.aug_probs.reshape(-1)[positive] * data.view_probs()[negative])
    weight = _param(net, name).detach()

    def losses(w):
        out = functional_call(net, {name: w}, (views,), strict=False)
        return loss(pair_distance(out[anchor], out[positive]), pair_distance(out[anchor], out[negative])[:, None])

    grads = jacrev(losses)(weight)
    return grads.reshape(grads.shape[0], -1).detach(), probs


def covariance_trace(grads: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """tr(Sigma) = E||g_c - E g_c||^2 over tuples c with probabilities ``probs``."""
    return probs @ ((grads - probs @ grads) ** 2).sum(1)


def iid_batch_counts(probs: torch.Tensor, batch: int, n_batches: int, generator: torch.Generator) -> torch.Tensor:
    """How often each tuple is drawn in each of ``n_batches`` batches of ``batch`` iid draws, (n_batches, C)."""
    picks = torch.multinomial(probs.double().cpu(), batch * n_batches, replacement=True, generator=generator)
    counts = torch.zeros(n_batches, probs.numel(), dtype=torch.float64)
    return counts.scatter_add_(1, picks.reshape(n_batches, batch), torch.ones(n_batches, batch, dtype=torch.float64))


def _normal_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def power_against_trace_error(stderr: float, relative_error: float = float(SAMPLED_TRACE_ERROR),
                              z: float = float(Z_SCORE_FALSE_ALARM)) -> float:
    """Power of the two-sided z-test "mean of B||g_B - g||^2 / tr(Sigma) is 1" when tr(Sigma) is off by
    ``relative_error`` (the mean is then 1/(1 +- e)), for the test statistic's standard error, normal approximation.
    The smaller of the two shifts, 1 - 1/(1 + e), is used."""
    shift = 1.0 - 1.0 / (1.0 + relative_error)
    return _normal_tail(z - shift / stderr) + _normal_tail(z + shift / stderr)


def check_sampled_error_rate(net: nn.Module, name: str, data: DiscreteAugmentedData, *, batch_sizes, n_batches: int,
                             seed: int, per_tuple: Callable = per_tuple_gradients, trace: Callable = covariance_trace,
                             sampler: Callable = iid_batch_counts, context: str = "") -> CheckResult:
    """Sampled-batch gradients g_B of L_simp are unbiased for g = -2 V[Kbar] w (Theorem 3, docs/THEORY.md §6), with
    E[B ||g_B - g||^2] = tr(Sigma): the error falls like 1/sqrt(B).

    Evidence, exact (float64 tolerance): the probability-weighted mean of the enumerated per-tuple gradients
    (autograd) equals -2 V[Kbar] w (structured operator), and tr(Sigma) centred on that mean equals
    E||g_c||^2 - ||g||^2. Monte Carlo: for each B and pooled over all B (inverse-variance weights), the mean over ``n_batches`` batches of
    B ||g_B - g||^2 / tr(Sigma) lies within Z_SCORE_FALSE_ALARM standard errors of 1 (false alarm 6.3e-5 per
    comparison). The pooled test's power against a SAMPLED_TRACE_ERROR (5%) error in tr(Sigma) is computed from its
    measured standard error (``power_against_trace_error``); below SAMPLED_MIN_POWER the check refuses to run.
    Returns a CheckResult whose ``details`` hold the per-B ratios, the power, and the fitted log-log slope of the RMS
    error (1/sqrt(B) gives -0.5).
    """
    __tracebackhide__ = True
    line = Context.of(context)
    where = Context(line, seed=seed if line.seed is None else line.seed, reproduce=line.reproduce).within(
        "Theorem 3, sampled batches", f"layer {name}", f"seed={seed}", where=f"layer {name}")
    grads, probs = per_tuple(net, name, data)
    exact = -2 * operator_times(net, name, data).detach()
    mean = probs @ grads
    assert_identity(mean, exact, kind="gradient", context=where,
                    what="E[per-tuple gradient] (autograd, enumerated) vs -2 V[Kbar_l] w_l")
    trace_sigma = trace(grads, probs)
    assert_identity(trace_sigma, probs @ (grads ** 2).sum(1) - exact @ exact, context=where,
                    what="tr(Sigma) = E||g_c - g||^2 vs E||g_c||^2 - ||g||^2")
    generator = make_generator(seed)
    z = float(Z_SCORE_FALSE_ALARM)
    ratios, stderrs = {}, {}
    for batch in batch_sizes:
        counts = sampler(probs, batch, n_batches, generator).to(grads)
        scaled = batch * ((counts @ grads / batch - exact) ** 2).sum(1) / trace_sigma
        ratios[batch], stderrs[batch] = float(scaled.mean()), float(scaled.std() / math.sqrt(n_batches))
    weights = {b: 1.0 / stderrs[b] ** 2 for b in batch_sizes}                 # inverse-variance pooling
    pooled = sum(weights[b] * ratios[b] for b in batch_sizes) / sum(weights.values())
    pooled_err = 1.0 / math.sqrt(sum(weights.values()))
    power = power_against_trace_error(pooled_err)
    if power < float(SAMPLED_MIN_POWER):
        raise BadInput(f"the sampled-batch check is underpowered: power {power:.3f} against a "
                       f"{float(SAMPLED_TRACE_ERROR):.0%} error in tr(Sigma) is below {float(SAMPLED_MIN_POWER)}; "
                       f"use more than {n_batches} batches [{where}]")
    checks = [("pooled over B", pooled, pooled_err)] + [(f"B={b}", ratios[b], stderrs[b]) for b in batch_sizes]
    rms = [math.sqrt(ratios[b] * float(trace_sigma) / b) for b in batch_sizes]
    details = {"ratio_by_batch": ratios, "pooled_ratio": pooled, "pooled_stderr": pooled_err, "power_at_5pct": power,
               "trace_sigma": float(trace_sigma), "loglog_slope": loglog_slope(list(batch_sizes), rms)}
    allowed = f"|ratio - 1| <= {z:g} standard errors"
    for label, value, err in checks:
        if abs(value - 1.0) > z * err:
            fail("E[B ||g_B - g||^2] / tr(Sigma) = 1", f"{value:.4f} +- {err:.4f} ({label})", limit=Z_SCORE_FALSE_ALARM,
                 allowed=allowed, figure=abs(value - 1.0) / err, context=where, where=f"layer {name}, {label}",
                 details=details, text=f"E[B ||g_B - g||^2] / tr(Sigma) = {value:.4f} +- {err:.4f} ({label}), expected "
                                       f"1 within {z:g} standard errors (false-alarm rate 6.3e-5) [{where}]")
    return passed("Theorem 3, sampled batches", limit=Z_SCORE_FALSE_ALARM, allowed=allowed,
                  figure=abs(pooled - 1.0) / pooled_err, context=where, details=details,
                  message="pooled |ratio - 1| in standard errors")
