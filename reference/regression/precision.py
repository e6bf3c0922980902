"""float32 accuracy, not mere finiteness: a loss's float32 value and pair weights against its own float64.

Four evaluations at the same probe points ``z`` (float64): ``exact``, the loss in float64 on ``z``;
``rounded``, in float64 on ``z`` rounded to float32; ``single``, in float32 on that rounded ``z``; ``ideal``,
as ``rounded`` but with the error any float32 code makes summing a point's gradient terms added to its
gradient (eps32 times the terms' size; the pair-weight recovery amplifies it where a point's weights nearly
cancel, as L_simp's do). ``single - rounded`` is the error of the loss's own float32 arithmetic. The loss's
sensitivity at these points is ``||rounded - exact|| + ||ideal - rounded||``. float32 is
accurate when, for the value and for the pair weights,

    ||single - rounded|| <= atol + rtol * size + FLOAT32_SENSITIVITY_FACTOR * sensitivity

with ``size`` the norm of the weights, or for the value |L| + sum |dL/dr_ij| r_ij (its terms' scale: the total
may cancel, as L_simp's does). Correct float32 code stays within a small multiple of its sensitivity at every
tau; a float16 step (rounding 4096 x float32's) or a saturating cap does not.

Temperatures: the declared tau, and with ``temperature_kwarg`` every tau of ``TAU_GRID`` below it (the loss
rebuilt there). The verdict (docs/REGRESSION.md, "The properties"):

- a wrong or non-finite figure at the declared tau fails: that is the temperature the user trains at;
- below the declared tau, a NaN or inf on the nearly aligned or the orthogonal inverted points fails
  (``STRICT_PROBES``): a correct log-sum-exp is finite there at any tau, so only an overflowing exp() (the classic
  exp() without subtracting the maximum is finite at tau = 0.5 and NaN at 0.01) or a -log of an underflowed
  share makes it;
- below the declared tau, a finite figure off by more than ``FLOAT32_GROSS_FACTOR`` times the allowed error
  fails: a silent gross error, as a saturating cap gives (``log(p + finfo.tiny)``: pair weights off by 100%);
- anything else below the declared tau is reported, not failed: the message gives the smallest tau down to which
  float32 stays accurate and where it first is not. A NaN there can come from a sum of exponentials that
  underflows to 0 when one logit dominates by more than 88 (HobbitLong's SupCon formula does this at tau = 0.01
  on some probes), which is a limit of the temperature, not a bug at the declared one.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.regression.batches import probes
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.probe import Probe, make_probe, recover_weights
from dualnet_ssl.regression.verdicts import Verdict
from dualnet_ssl.seeding import derive_seed, make_generator
from dualnet_ssl.thresholds import FLOAT32_GROSS_FACTOR, FLOAT32_SENSITIVITY_FACTOR
from dualnet_ssl.tolerances import tolerance

TAU_GRID = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
"""Temperatures probed below the declared one, down to 0.01 (e^{1/0.01} = e^100 overflows float32)."""

ALIGNED_NOISE = 1e-2
"""Nearly aligned points: u + ALIGNED_NOISE * e / sqrt(n), so cosines are within about 1e-4 of 1."""

SPREAD_NORM = 2.0
"""Spread points of norm about 2: squared distances up to 8, so r / tau reaches 800 at tau = 0.01."""

INVERTED_NOISE = 0.1
"""Inverted points: the first point of each sample at +u, its positives at -u (r = 2 on unit rows), each plus
INVERTED_NOISE noise, so negatives are nearer than positives; at tau = 0.01 the positive's softmax share is about
e^-200, which underflows float32 (a -log(softmax) computed in two steps returns inf) but not float64.
Orthogonal inverted points: each sample on its own axis, its first point at +e, its other views at -e (plus
INVERTED_NOISE noise), so for every anchor the positive is at cos -1 and every negative at cos 0. At tau = 0.01
the positive's share is about e^-100 for every anchor at once: a cap or a two-step -log(softmax) saturates on
this draw whatever the seed, where the random spread points expose it only on some draws (pytorch-metric-
learning's one-directional NTXentLoss: 4 of 24 seeds)."""


STRICT_PROBES = ("nearly aligned points", "orthogonal inverted points")
"""The geometries on which a non-finite figure below the declared tau fails. A log-sum-exp computed correctly is
finite on both at any tau >= 0.01: nearly aligned, every logit is about 1/tau (only an exp() that overflows fails);
orthogonal inverted, the positive's logit is -1/tau and every negative's 0 (only a -log of a share that underflows
fails). Random geometries can push a correct but fragile formula (SupCon's self-similarity in the max) to underflow
at tau = 0.01, so a non-finite figure there is reported."""


class _PerturbGradient(torch.autograd.Function):
    """Identity forward; backward adds a fixed perturbation to the gradient."""

    @staticmethod
    def forward(ctx, x, noise):
        ctx.save_for_backward(noise)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (noise,) = ctx.saved_tensors
        return grad + noise, None


def _in(adapter: LossAdapter, dtype: torch.dtype, noise: tuple | None = None) -> LossAdapter:
    """The loss fed its floating inputs rounded to float32, then cast to ``dtype`` (inside the autograd graph);
    with ``noise`` (one tensor per argument), that perturbation is added to the gradient it returns."""
    fn = adapter.fn

    def cast(a, k):
        if not (torch.is_tensor(a) and a.is_floating_point()):
            return a
        a = a.float().to(dtype)
        return _PerturbGradient.apply(a, noise[k]) if noise is not None else a

    return dataclasses.replace(adapter, fn=lambda *args: fn(*(cast(a, k) for k, a in enumerate(args))))


def _summation_noise(probe: Probe, weights: torch.Tensor) -> tuple:
    """The gradient error any float32 loss makes summing its pair terms: for point i, eps32 times the size of
    its terms, sum_j |w_ij| ||z_i - z_j||, in a random direction (seeded), split as the loss's arguments."""
    z = probe.points()
    terms = (weights.abs() * torch.cdist(z, z)).sum(1)
    g = make_generator(derive_seed(probe.seed, "float32 summation"))
    u = torch.randn(z.shape, generator=g, dtype=z.dtype) / math.sqrt(z.shape[1])
    return probe.layout.split(torch.finfo(torch.float32).eps * terms[:, None] * u)


def _extremes(adapter: LossAdapter, probe: Probe) -> dict[str, Probe]:
    """Nearly aligned, spread and inverted points in the probe's layout (unit rows when the caller normalises)."""
    n = probe.layout.n_points
    g = make_generator(derive_seed(probe.seed, "float32 extremes"))
    direction = nn.functional.normalize(torch.randn(n + 8, generator=g, dtype=torch.float64), dim=0)
    noise = torch.randn(n, n + 8, generator=g, dtype=torch.float64) / math.sqrt(n + 8)
    first = torch.tensor([bool((probe.layout.groups[:k] != probe.layout.groups[k]).all()) for k in range(n)])
    sign = torch.where(first, 1.0, -1.0).to(torch.float64)[:, None]
    own_axis = torch.eye(n + 8, dtype=torch.float64)[probe.layout.groups]
    found = {"nearly aligned": direction + ALIGNED_NOISE * noise,
             "spread": SPREAD_NORM * torch.randn(n, n + 8, generator=g, dtype=torch.float64) / math.sqrt(n + 8),
             "inverted": sign * direction + INVERTED_NOISE * noise,
             "orthogonal inverted": sign * own_axis + INVERTED_NOISE * noise}
    if getattr(adapter, "unit_inputs", False):
        found = {k: nn.functional.normalize(z, dim=1) for k, z in found.items()}
    return {k: Probe(probe.layout, z @ z.T, probe.dim, probe.seed) for k, z in found.items()}


def _seen_distances(adapter: LossAdapter, gram: torch.Tensor) -> torch.Tensor:
    """r_ij as the loss sees it: 1/2 ||z_i - z_j||^2, or 1 - cos for a loss on unit rows."""
    if getattr(adapter, "on_unit_rows", adapter.normalises):
        d = torch.diagonal(gram).sqrt()
        return 1.0 - gram / (d[:, None] * d[None, :])
    d = torch.diagonal(gram)
    return (d[:, None] + d[None, :]) / 2 - gram


@dataclasses.dataclass(frozen=True)
class Reading:
    tau: float | None
    where: str
    error: float          # relative error of float32 (worst of value and pair weights)
    allowed: float        # the relative error allowed at these points
    quantity: str         # which of the two is worst
    finite: bool


def _read(adapter: LossAdapter, probe: Probe, tau: float | None, where: str) -> Reading:
    exact = recover_weights(adapter, probe)
    if exact.value.dtype != torch.float64:
        raise NotApplicable(f"the loss returns {exact.value.dtype} on float64 inputs, so it has no float64 twin to "
                            "hold its float32 results to; return float64 for float64 inputs to check float32 accuracy")
    rounded = recover_weights(_in(adapter, torch.float64), probe)
    single = recover_weights(_in(adapter, torch.float32), probe)
    ideal = recover_weights(_in(adapter, torch.float64, _summation_noise(probe, exact.pairs)), probe)
    for run, dtype in ((exact, "float64"), (rounded, "float64"), (single, "float32")):
        for quantity, t in (("value", run.value), ("pair weights", run.pairs)):
            if not bool(torch.isfinite(t).all()):
                return Reading(tau, where, math.inf, 0.0, f"{dtype} {quantity}", False)
    tol = tolerance(torch.float32, "float32_accuracy")
    terms = float(torch.triu(exact.pairs.abs() * _seen_distances(adapter, probe.gram), diagonal=1).sum())
    worst = None
    for quantity, get in (("value", lambda w: w.value), ("pair weights", lambda w: w.pairs)):
        s, r, e, i = (get(w).double() for w in (single, rounded, exact, ideal))
        # the value's scale is its terms' (sum |dL/dr| r), not the total, which may cancel (L_simp)
        size = (float(r.norm()) + (terms if quantity == "value" else 0.0)) or 1.0
        sensitivity = float((r - e).norm()) + float((i - r).norm())   # rounding the inputs; summing in float32
        allowed = tol.atol + tol.rtol * size + float(FLOAT32_SENSITIVITY_FACTOR) * sensitivity
        reading = Reading(tau, where, float((s - r).norm()) / size, allowed / size, quantity, True)
        if worst is None or reading.error / reading.allowed > worst.error / worst.allowed:
            worst = reading
    return worst


def _at(adapter: LossAdapter, probe: Probe, tau: float | None) -> list[Reading]:
    readings = [_read(adapter, probe, tau, f"probe points, N={probe.layout.n_samples}")]
    return readings + [_read(adapter, p, tau, f"{k} points") for k, p in _extremes(adapter, probe).items()]


def _ok(r: Reading) -> bool:
    return r.finite and r.error <= r.allowed


def _describe(r: Reading) -> str:
    if not r.finite:
        return f"at {_where(r)}: the {r.quantity} has NaN or inf entries"
    return (f"at {_where(r)}: float32 {r.quantity} off by {r.error:.2e} relative to float64 "
            f"(allowed {r.allowed:.2e})")


def _where(r: Reading) -> str:
    return f"{'own temperature' if r.tau is None else f'tau={r.tau:g}'}, {r.where}"


def _smallest_accurate(declared: float | None, below: list) -> str:
    if declared is None:
        return ("probed at the loss's own temperature only (declare temperature and temperature_kwarg to probe "
                "the tau grid down to 0.01)")
    smallest = declared
    for tau, readings in below:
        if not all(_ok(r) for r in readings):
            return f"float32 stays accurate down to tau={smallest:g}, not below"
        smallest = tau
    return f"float32 stays accurate down to tau={smallest:g}" + (", the whole grid" if below else "")


def check_float32(subject, seed: int) -> Verdict:
    """The property ``stability_float32``: float32 value and pair weights accurate (and finite) at the declared
    tau (every probe batch size; nearly aligned, spread, inverted points) and on the tau grid below it; it gives
    the smallest tau down to which float32 stays accurate (see the module docstring)."""
    adapter = subject.build()
    declared = adapter.temperature
    sized = probes(adapter, seed)
    here = _at(adapter, sized[0], declared) + [_read(adapter, p, declared, f"probe points, N={p.layout.n_samples}")
                                               for p in sized[1:]]
    below = []
    if declared is not None and adapter.temperature_kwarg:
        for tau in (t for t in TAU_GRID if t < declared):
            rebuilt = subject.at_temperature(tau)
            below.append((tau, _at(rebuilt, make_probe(rebuilt, derive_seed(seed, f"tau {tau:g}")), tau)))
    reach = _smallest_accurate(declared if adapter.temperature_kwarg else None, below)
    if not all(_ok(r) for r in here):
        reach = "float32 is not accurate even at the declared temperature"
    worst = max(here, key=lambda r: r.error / r.allowed if r.allowed else math.inf)
    def tol(r: Reading) -> str:
        return (f"{r.allowed:.2e} relative (the float32_accuracy tolerance + {float(FLOAT32_SENSITIVITY_FACTOR):g} "
                "x the loss's float32 sensitivity at these points)")
    overflow = [r for _, readings in below for r in readings if not r.finite and r.where in STRICT_PROBES]
    gross = float(FLOAT32_GROSS_FACTOR)
    silent = [r for _, readings in below for r in readings if r.finite and r.error > gross * r.allowed]
    bad = [r for r in here if not _ok(r)] + overflow + silent
    reported = [r for _, readings in below for r in readings if not _ok(r) and r not in overflow + silent]
    if reported:
        reach += f" (first inaccurate {_describe(reported[0])}; reported, not failed: below the declared tau)"
    if bad:
        first = bad[0]
        at = "at the declared temperature" if first.tau == declared else f"below the declared tau={declared:g}"
        figure = math.inf if not first.finite else first.error
        return Verdict(False, figure, tol(first if first.finite else worst),
                       f"{_describe(first)} ({at}); {reach}; the loss loses precision in float32: a float16/bfloat16 "
                       "step inside, a dtype-dependent cap or clamp (saturation), or exp() without subtracting the "
                       "maximum (use logsumexp / cross_entropy)", where=_where(first))
    at = "its own temperature" if declared is None else f"the declared tau={declared:g}"
    return Verdict(True, worst.error, tol(worst), f"float32 value and pair weights agree with float64 at {at} on probe "
                   f"(every batch size), nearly aligned, spread and inverted points (worst: {worst.quantity}, "
                   f"{worst.where}, {worst.error:.2e}); {reach}", where=worst.where)
