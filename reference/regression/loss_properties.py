"""The properties the theory needs of a loss, probed as a black box (docs/REGRESSION.md, "The properties")."""
from __future__ import annotations

import math

import torch
from torch import nn

from dualnet_ssl.regression.declarations import Layout, LossAdapter
from dualnet_ssl.regression.loading import LossSubject
from dualnet_ssl.regression.probe import (PROBE_SAMPLES, PairWeights, Probe, fitting_layout, make_probe,
                                          recover_weights)
from dualnet_ssl.regression.reference_properties import reference_value, reference_weights
from dualnet_ssl.regression.verdicts import Verdict, compare, run_check, working_dtype
from dualnet_ssl.errors import BadInput, NotApplicable
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.tolerances import Tolerance, tolerance


STABILITY_TEMPERATURE = 0.01
"""The temperature of the float32 stability probe (issue: tau = 0.01): e^{1/tau} = e^100 overflows float32."""


ALIGNED_NOISE = 1e-2
"""Nearly aligned points: u + ALIGNED_NOISE * e, so cosines are within 1e-4 of 1."""


SPREAD_NORM = 2.0
"""Spread points of norm about 2: squared distances up to 8, so r / tau reaches 800 at tau = 0.01."""


LOSS_PROPERTIES = ("rotation_invariance", "pairwise_structure", "gradient_symmetry", "balance_total",
                   "balance_per_anchor", "weight_signs", "undeclared_pairs", "reference_value", "reference_weights",
                   "stability_float32")


def _noise_floor(found: PairWeights) -> tuple[float, Tolerance]:
    tol = tolerance(working_dtype(found.value, found.pairs), "gradient")
    return tol.atol + tol.rtol * float(found.pairs.abs().max()), tol


def _require_gradient(weights: torch.Tensor) -> None:
    if not bool((weights != 0).any()):
        raise NotApplicable("the loss's gradient is zero on every pair of the probe (e.g. every margin is met), "
                            "so there is nothing to weigh; rerun with another seed")


def _rotation_invariance(adapter: LossAdapter, probe: Probe) -> Verdict:
    z = probe.points()
    rotation, _ = torch.linalg.qr(torch.randn(probe.dim, probe.dim, generator=make_generator(probe.seed + 1),
                                              dtype=z.dtype))
    v = compare(adapter.evaluate(z @ rotation, probe.layout), adapter.evaluate(z, probe.layout),
                 what="loss after a random rotation of every point vs before", kind="exact")
    hint = "" if v.ok else ("; the loss is not a function of pairwise similarities (does it use raw coordinates, "
                            "a fixed projection or a sort?)")
    return Verdict(v.ok, v.measured, v.tolerance, v.message + hint)


def _pairwise_structure(adapter: LossAdapter, probe: Probe) -> Verdict:
    z = probe.points()
    g = make_generator(probe.seed + 2)
    if adapter.normalises:
        # powers of two: the rescaling is exact, so a normalising loss returns the same bits
        moved = z * 2.0 ** torch.randint(-2, 3, (z.shape[0], 1), generator=g).to(z.dtype)
        what = "loss after rescaling each point by a power of two vs before"
        hint = ("; the adapter declares normalises=True but the loss changes when a row is rescaled: it uses an "
                "unnormalised dot product or distance somewhere")
    else:
        moved = z + torch.randn(z.shape[1], generator=g, dtype=z.dtype)
        what = "loss after translating every point by one vector vs before"
        hint = ("; the loss is not a function of pairwise distances; if it normalises its inputs, declare "
                "normalises=True (then r = 1 - cos)")
    v = compare(adapter.evaluate(moved, probe.layout), adapter.evaluate(z, probe.layout), what=what, kind="exact")
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))


def _gradient_symmetry(adapter: LossAdapter, probe: Probe) -> Verdict:
    z = probe.points().requires_grad_(True)
    value = adapter.evaluate(z, probe.layout)
    (grad,) = torch.autograd.grad(value.sum(), z)
    moment = z.detach().T @ grad
    v = compare(moment, moment.T, what="Z^T dL/dZ vs its transpose", kind="gradient", also=(value,))
    hint = ("; autograd's gradient is not the gradient of any function of pairwise similarities: a detach() or "
            "stop-gradient on some of the pairs (e.g. on the negatives) drops part of each pair's gradient")
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))


def _imbalance(weights: torch.Tensor) -> tuple[float, float]:
    upper = torch.triu(weights, diagonal=1)
    return float(upper.sum()), float(upper.abs().sum())


def _balance_total(adapter: LossAdapter, probe: Probe) -> Verdict:
    found = recover_weights(adapter, probe)
    weights = found.pairs
    _require_gradient(weights)
    total, scale = _imbalance(weights)
    tol = tolerance(working_dtype(found.value, weights), "gradient")
    ok = abs(total) <= tol.atol + tol.rtol * scale
    roles = probe.layout.roles()
    pos, neg = float(weights[roles == 1].sum()) / 2, float(weights[roles == -1].sum()) / 2
    message = (f"sum over all pairs of dL/dr = {total:.3e} (positives {pos:.3e}, declared negatives {neg:.3e}, "
               f"sum |dL/dr| = {scale:.3e}); Theorem 2 needs it to be 0")
    if not ok:
        message += ("; the loss is not balanced, so its gradient is not a covariance operator: an extra pull on "
                    "positives, an unmasked self-similarity or an extra logit in the denominator does this")
    return Verdict(ok, abs(total) / scale, tol, message)


def _balance_per_anchor(adapter: LossAdapter, probe: Probe) -> Verdict:
    if adapter.reduction != "none":
        raise NotApplicable(f"the loss returns one {adapter.reduction} over anchors; a loss that can return one value "
                            "per anchor, declared reduction='none', is checked anchor by anchor")
    found = recover_weights(adapter, probe, per_anchor=True)
    per_anchor = found.per_anchor
    _require_gradient(per_anchor)
    sums = [_imbalance(w) for w in per_anchor]
    tol = tolerance(working_dtype(found.value, per_anchor), "gradient")
    rel = [abs(t) / s if s > 0 else 0.0 for t, s in sums]
    worst = max(range(len(sums)), key=lambda a: rel[a])
    ok = all(abs(t) <= tol.atol + tol.rtol * s for t, s in sums)
    return Verdict(ok, rel[worst], tol, f"worst anchor {int(probe.layout.anchors[worst])}: sum of its dL_a/dr = "
                                        f"{sums[worst][0]:.3e} (sum |dL_a/dr| = {sums[worst][1]:.3e}); Theorem 2 "
                                        "needs 0 for every anchor")


def _weights_and_roles(adapter: LossAdapter, probe: Probe):
    """(pair weights, their noise floor, its tolerance, the declared roles) for the sign and zero checks."""
    found = recover_weights(adapter, probe)
    _require_gradient(found.pairs)
    noise, tol = _noise_floor(found)
    return found.pairs, noise, tol, probe.layout.roles()


def _weight_signs(adapter: LossAdapter, probe: Probe) -> Verdict:
    weights, noise, tol, roles = _weights_and_roles(adapter, probe)
    wrong = ((roles == 1) & (weights < -noise)) | ((roles == -1) & (weights > noise))
    vanishing = int((((roles != 0) & (weights.abs() <= noise)).sum()) // 2)
    peak = float(weights.abs().max())
    note = f"; {vanishing} declared pairs have weights below the noise floor {noise:.1e}" if vanishing else ""
    if not bool(wrong.any()):
        return Verdict(True, 0.0, tol, "dL/dr > 0 on every declared positive, < 0 on every declared negative" + note)
    i, j = (int(k) for k in torch.nonzero(wrong & (weights.abs() == weights[wrong].abs().max()))[0])
    kind = "positive" if int(roles[i, j]) == 1 else "negative"
    return Verdict(False, float(weights[wrong].abs().max()) / peak, tol,
                   f"{int(wrong.sum()) // 2} declared pairs have the wrong sign; worst: pair ({i}, {j}), declared "
                   f"{kind}, has dL/dr = {float(weights[i, j]):.3e} (Theorem 2: > 0 on positives, < 0 on negatives); "
                   f"are the positives taken from the right diagonal? (declared: {adapter.describe()})" + note)


def _undeclared_pairs(adapter: LossAdapter, probe: Probe) -> Verdict:
    weights, noise, tol, roles = _weights_and_roles(adapter, probe)
    off = (roles == 0) & ~torch.eye(roles.shape[0], dtype=torch.bool)
    if not bool(off.any()):
        return Verdict(True, 0.0, tol, "the declaration leaves no pair undeclared")
    worst = float(weights[off].abs().max())
    i, j = (int(k) for k in torch.nonzero(off & (weights.abs() == worst))[0])
    message = f"largest |dL/dr| on an undeclared pair: {worst:.3e} at pair ({i}, {j})"
    if worst > noise:
        message += (f"; the loss weighs pairs its declaration does not list: check the declaration "
                    f"({adapter.describe()}) or the loss's masking")
    return Verdict(worst <= noise, worst / float(weights.abs().max()), tol, message)


def _stability_points(adapter: LossAdapter, layout: Layout, dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = make_generator(seed + 3)
    n = layout.n_points
    direction = nn.functional.normalize(torch.randn(dim, generator=g, dtype=torch.float64), dim=0)
    aligned = direction + ALIGNED_NOISE * torch.randn(n, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    spread = SPREAD_NORM * torch.randn(n, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    return {"nearly aligned": aligned.float(), "spread": spread.float()}


def check_stability(adapter: LossAdapter, cold: LossAdapter | None, seed: int) -> Verdict:
    """float32, tau = STABILITY_TEMPERATURE (when the loss declares its temperature keyword): value and
    gradient finite on nearly aligned and on spread points."""
    used = adapter if cold is None else cold
    layout = fitting_layout(used, used.dim, PROBE_SAMPLES[used.form])
    dim = max(layout.n_points, used.dim or 0)
    where = (f"tau={STABILITY_TEMPERATURE:g}" if cold is not None else
             "its own temperature (declare temperature_kwarg to probe tau=0.01)")
    bad = []
    for name, points in _stability_points(used, layout, dim, seed).items():
        z = points.requires_grad_(True)
        value = used.evaluate(z, layout)
        grad = torch.autograd.grad(value.sum(), z, allow_unused=True)[0] if value.requires_grad else None
        n_bad = int((~torch.isfinite(value)).sum()) + (0 if grad is None else int((~torch.isfinite(grad)).sum()))
        if n_bad:
            bad.append((name, n_bad, float(value.detach().sum())))
    if not bad:
        return Verdict(True, 0.0, "0 non-finite values", f"float32 at {where}: value and gradient finite on nearly "
                                                          "aligned and on spread points")
    detail = "; ".join(f"{name} points: {n} non-finite entries (value {v:.3g})" for name, n, v in bad)
    return Verdict(False, float(sum(n for _, n, _ in bad)), "0 non-finite values",
                   f"float32 at {where}: {detail}; exp() of logits without subtracting their maximum overflows "
                   "(e^(1/tau) = e^100 > 3.4e38) or underflows to 0/0: use logsumexp / cross_entropy")


_LOSS_CHECKS = {"rotation_invariance": _rotation_invariance, "pairwise_structure": _pairwise_structure,
                "gradient_symmetry": _gradient_symmetry, "balance_total": _balance_total,
                "balance_per_anchor": _balance_per_anchor, "weight_signs": _weight_signs,
                "undeclared_pairs": _undeclared_pairs, "reference_value": reference_value,
                "reference_weights": reference_weights}


def check_loss(subject: LossSubject, prop: str, seed: int) -> CheckResult:
    """One loss property (see LOSS_PROPERTIES) of ``subject`` at ``seed``."""
    if prop not in LOSS_PROPERTIES:
        raise BadInput(f"unknown loss property {prop!r}; known: {LOSS_PROPERTIES}")

    def body() -> Verdict:
        adapter = subject.build()
        if prop == "stability_float32":
            return check_stability(adapter, subject.at_temperature(STABILITY_TEMPERATURE), seed)
        return _LOSS_CHECKS[prop](adapter, make_probe(adapter, seed))

    return run_check(prop, subject.name, seed, body)
