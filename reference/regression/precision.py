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

Temperatures (docs/REGRESSION.md, "How the temperature decides the verdict"): the verdict is decided at the
temperatures the loss declares it is used at, its ``temperature`` or every tau of a declared range
``temperatures=(low, high)``; there an inaccurate or non-finite figure fails, with its cause. With
``temperature_kwarg`` the loss is rebuilt at the grid temperatures below them (sampled at large batches): an
inaccuracy there is a *finding* (the smallest safe tau and the cause, ``diagnose``), shown as a ``Float32Finding``
warning and recorded in the verdict's ``details``; it fails only when ``strict_float32`` is declared (or the run
passes ``--ssl-strict-float32``).
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.regression.batches import probes
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.engine import NOT_CHECKED_IN, Rebuild, with_inputs
from dualnet_ssl.regression.geometry import Probe, make_probe
from dualnet_ssl.regression.probe import recover_weights
from dualnet_ssl.regression.reference_losses import gram_distances
from dualnet_ssl.regression.verdicts import Verdict
from dualnet_ssl.seeding import derive_seed, make_generator
from dualnet_ssl.thresholds import FLOAT32_GROSS_FACTOR, FLOAT32_LOW_PRECISION_ERROR, FLOAT32_SENSITIVITY_FACTOR
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

EXTRA_DIMENSIONS = 8
"""The extreme geometries draw their n points in n + EXTRA_DIMENSIONS dimensions: n Gaussian rows in more dimensions
than points have a Gram matrix whose smallest eigenvalue stays away from 0 (with exactly n it can come arbitrarily
close to 0), so the Cholesky embedding and the pair-weight solve stay well conditioned."""



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
    def cast(a, k):
        a = a.float().to(dtype)
        return _PerturbGradient.apply(a, noise[k]) if noise is not None else a

    return with_inputs(adapter, cast)


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
    width = n + EXTRA_DIMENSIONS
    g = make_generator(derive_seed(probe.seed, "float32 extremes"))
    direction = nn.functional.normalize(torch.randn(width, generator=g, dtype=torch.float64), dim=0)
    noise = torch.randn(n, width, generator=g, dtype=torch.float64) / math.sqrt(width)
    first = torch.tensor([bool((probe.layout.groups[:k] != probe.layout.groups[k]).all()) for k in range(n)])
    sign = torch.where(first, 1.0, -1.0).to(torch.float64)[:, None]
    own_axis = torch.eye(width, dtype=torch.float64)[probe.layout.groups]
    found = {"nearly aligned": direction + ALIGNED_NOISE * noise,
             "spread": SPREAD_NORM * torch.randn(n, width, generator=g, dtype=torch.float64) / math.sqrt(width),
             "inverted": sign * direction + INVERTED_NOISE * noise,
             "orthogonal inverted": sign * own_axis + INVERTED_NOISE * noise}
    if adapter.unit_inputs:
        found = {k: nn.functional.normalize(z, dim=1) for k, z in found.items()}
    return {k: Probe(probe.layout, z @ z.T, probe.dim, probe.seed) for k, z in found.items()}


LARGE_PROBE = 128
"""Points above which the tau grid below the declared temperatures is sampled (SAMPLED_GRID_POINTS of it), so the
float32 check stays within its budget at any declared batch size (docs/REGRESSION.md, "Cost")."""

SAMPLED_GRID_POINTS = 2
"""Grid temperatures probed below the declared ones at large batches: the first below them and the lowest, 0.01."""


@dataclasses.dataclass(frozen=True)
class Reading:
    tau: float | None
    where: str
    error: float          # relative error of float32 (worst of value and pair weights)
    allowed: float        # the relative error allowed at these points
    quantity: str         # which of the two is worst
    finite: bool


def _read(adapter: LossAdapter, probe: Probe, tau: float | None, where: str) -> Reading:
    exact, rounded, single = (recover_weights(a, probe) for a in (adapter, _in(adapter, torch.float64),
                                                                    _in(adapter, torch.float32)))
    if exact.value.dtype != torch.float64:
        raise NotApplicable(f"the loss returns {exact.value.dtype} on float64 inputs, so it has no float64 twin to "
                            "hold its float32 results to; return float64 for float64 inputs to check float32 accuracy")
    ideal = recover_weights(_in(adapter, torch.float64, _summation_noise(probe, exact.pairs)), probe)
    for run, dtype in ((exact, "float64"), (rounded, "float64"), (single, "float32")):
        for quantity, t in (("value", run.value), ("pair weights", run.pairs)):
            if not bool(torch.isfinite(t).all()):
                return Reading(tau, where, math.inf, 0.0, f"{dtype} {quantity}", False)
    tol = tolerance(torch.float32, "float32_accuracy")
    seen = gram_distances(probe.gram, bool(adapter.on_unit_rows))   # r as the loss sees it
    terms = float(torch.triu(exact.pairs.abs() * seen, diagonal=1).sum())
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


DIAGNOSTIC_GEOMETRIES = ("nearly aligned", "inverted", "orthogonal inverted")
"""The geometries probed below the declared temperatures at a large probe (more than LARGE_PROBE points): the ones
whose pattern names the cause (``diagnose``); the random probe and spread points are probed at the declared tau."""


def _at(adapter: LossAdapter, probe: Probe, tau: float | None, finding_only: bool = False) -> list[Reading]:
    """Readings at ``tau`` on the probe and the extreme geometries; for a finding below the declared temperatures
    at a large probe, on the diagnostic geometries only (the cost bound of docs/REGRESSION.md, "Cost")."""
    sampled = finding_only and probe.layout.n_points > LARGE_PROBE
    readings = [] if sampled else [_read(adapter, probe, tau, f"probe points, N={probe.layout.n_samples}")]
    return readings + [_read(adapter, p, tau, f"{k} points") for k, p in _extremes(adapter, probe).items()
                       if not sampled or k in DIAGNOSTIC_GEOMETRIES]


def _ok(r: Reading) -> bool:
    return r.finite and r.error <= r.allowed


def _describe(r: Reading) -> str:
    if not r.finite:
        return f"at {_where(r)}: the {r.quantity} has NaN or inf entries"
    return (f"at {_where(r)}: float32 {r.quantity} off by {r.error:.2e} relative to float64 "
            f"(allowed {r.allowed:.2e})")


def _where(r: Reading) -> str:
    return f"{'own temperature' if r.tau is None else f'tau={r.tau:g}'}, {r.where}"


class Float32Finding(UserWarning):
    """float32 loses accuracy below the temperatures the loss declares: reported (a pytest warning and the report's
    ``details``), not failed, unless ``strict_float32`` is declared or ``--ssl-strict-float32`` is given."""


CAUSES = {
    "float64_nan": "NaN or inf already in float64: the loss itself is not finite at these points, whatever the dtype",
    "low_precision": "a float16/bfloat16 step: float32 is off by about float16's or bfloat16's rounding (1e-4 to "
                     "1e-2) on ordinary points, at large tau too; compute the similarities in the inputs' dtype",
    "no_max_subtraction": "exp() without the maximum subtracted: on nearly aligned points every logit is about 1/tau "
                          "and exp(1/tau) overflows float32 once 1/tau > 88.7; use logsumexp or cross_entropy",
    "two_step_softmax": "a -log(softmax(.)) in two steps: the positive's share underflows float32 (e^-103) on "
                        "inverted points, and its log is inf; use log_softmax or cross_entropy",
    "saturating_cap": "a saturating cap: finite but grossly wrong float32 figures (a log(p + finfo.tiny) or a clamp "
                      "on exp at the dtype's limit holds the value while its gradient vanishes); use log_softmax",
    "masked_max": "a maximum taken over a masked entry: the maximum subtracted includes the masked self-similarity "
                  "(1/tau), so where every other logit lies more than 103 below it (positives and negatives far "
                  "from the anchor) the sum of exponentials underflows float32 to 0 and its log is -inf (SupCon's "
                  "reference code); take the maximum over the unmasked logits only",
    "undetermined": "cause not determined (none of the patterns of a float16 step, an exp() without the maximum, a "
                    "two-step -log(softmax), a saturating cap or a maximum over a masked entry)",
}
"""The causes of a float32 inaccuracy the suite tells apart from the pattern of its readings (``diagnose``)."""

def diagnose(readings: list[Reading]) -> str:
    """The cause (a key of CAUSES) the pattern of inaccurate readings points to. NaN in float64 first. Then, when
    float32 is non-finite somewhere: on nearly aligned points (exp() overflows: no maximum subtracted); on inverted
    points (the positive's share underflows: a two-step -log(softmax)); elsewhere only, a saturating cap if some
    finite figure is grossly off, else a maximum over the masked entry. When every figure is finite: off by more
    than FLOAT32_LOW_PRECISION_ERROR relative, a saturating cap; a smaller error on the ordinary probe points, a
    float16/bfloat16 step; off the probe points by more than FLOAT32_GROSS_FACTOR x the allowed error, a
    saturating cap again (its value held near log(tiny)); else undetermined."""
    bad = [r for r in readings if not _ok(r)]
    small = float(FLOAT32_LOW_PRECISION_ERROR)
    on_probe = [r for r in bad if r.where.startswith("probe points")]
    gross = any(r.finite and (r.error > small or (r not in on_probe and r.error > float(FLOAT32_GROSS_FACTOR)
                                                   * r.allowed)) for r in bad)
    if any(not r.finite and r.quantity.startswith("float64") for r in bad):
        return "float64_nan"
    if any(not r.finite for r in bad):
        if any(not r.finite and r.where == "nearly aligned points" for r in bad):
            return "no_max_subtraction"
        if any(not r.finite and r.where == "inverted points" for r in bad):
            return "two_step_softmax"
        return "saturating_cap" if gross else "masked_max"
    if any(r.error > small for r in bad):
        return "saturating_cap"
    if on_probe:
        return "low_precision"
    return "saturating_cap" if gross else "undetermined"


def _smallest_accurate(declared: float, below: list) -> float:
    """The smallest tau down to which every reading is accurate, walking the (sampled) grid down from ``declared``."""
    smallest = declared
    for tau, readings in below:
        if not all(_ok(r) for r in readings):
            break
        smallest = tau
    return smallest


def verdict_temperatures(adapter: LossAdapter) -> tuple[float | None, ...]:
    """The temperatures the float32 verdict is decided at: the declared tau (None: the loss's own), and with
    ``temperatures=(low, high)`` both ends and every grid tau between them."""
    taus = [adapter.temperature]
    if adapter.temperatures:
        low, high = adapter.temperatures
        taus += [low, high] + [t for t in TAU_GRID if low < t < high]
    return tuple(dict.fromkeys(t for t in taus if t is not None or len(taus) == 1))


def grid_below(adapter: LossAdapter, n_points: int) -> tuple[float, ...]:
    """The grid temperatures below every verdict temperature, probed for findings (with ``temperature_kwarg``);
    sampled at large batches."""
    taus = [t for t in verdict_temperatures(adapter) if t is not None]
    if not (taus and adapter.temperature_kwarg):
        return ()
    below = tuple(t for t in TAU_GRID if t < min(taus))
    if n_points > LARGE_PROBE and len(below) > SAMPLED_GRID_POINTS:
        below = below[:SAMPLED_GRID_POINTS - 1] + below[-1:]
    return below


def _tolerance_text(r: Reading) -> str:
    return (f"{r.allowed:.2e} relative (the float32_accuracy tolerance + {float(FLOAT32_SENSITIVITY_FACTOR):g} "
            "x the loss's float32 sensitivity at these points)")


def _finding(declared: float, below: list, strict: bool) -> dict | None:
    """The float32 finding below the verdict temperatures: the smallest safe tau, the first inaccurate reading and
    its cause (strict-JSON values), or None when float32 is accurate on the whole probed grid."""
    flat = [r for _, readings in below for r in readings]
    first = next((r for r in flat if not _ok(r)), None)
    if first is None:
        return None
    cause = diagnose(flat)
    return {"smallest_safe_tau": _smallest_accurate(declared, below), "first_inaccurate": {
        "tau": first.tau, "where": first.where, "quantity": first.quantity,
        "error": first.error if math.isfinite(first.error) else None, "allowed": first.allowed},
        "cause": cause, "cause_text": CAUSES[cause], "strict": strict,
        "probed": [tau for tau, _ in below]}


def finding_text(finding: dict) -> str:
    """One sentence for the pytest warning and the passing verdict's message."""
    first = finding["first_inaccurate"]
    figure = ("NaN or inf" if first["error"] is None else
              f"off by {first['error']:.2e} relative (allowed {first['allowed']:.2e})")
    what = first["quantity"] if first["quantity"].startswith("float") else f"float32 {first['quantity']}"
    return (f"float32 finding: accurate down to tau={finding['smallest_safe_tau']:g} only; at tau={first['tau']:g}, "
            f"{first['where']}, the {what} {'are' if what.endswith('s') else 'is'} {figure}; cause: "
            f"{finding['cause_text']}")


def check_float32(adapter: LossAdapter, rebuild: Rebuild, seed: int) -> Verdict:
    """The property ``stability_float32`` (docs/REGRESSION.md, "float32 accuracy"): float32 value and pair weights
    accurate and finite at the declared tau (every probe batch size; nearly aligned, spread, inverted points), or at
    every tau of a declared range ``temperatures``, where ``rebuild`` (``engine.Rebuild``) makes the loss at another
    tau. Below them it is a finding (smallest safe tau and cause, in the verdict's ``details``), a failure only with
    ``strict_float32``."""
    if adapter.dtype:
        raise NotApplicable(f"declared dtype='{adapter.dtype}': the loss accepts one dtype only, so "
                            f"{NOT_CHECKED_IN[adapter.dtype]}")
    declared = adapter.temperature
    sized = probes(adapter, seed)
    here = _at(adapter, sized[0], declared) + [_read(adapter, p, declared, f"probe points, N={p.layout.n_samples}")
                                               for p in sized[1:]]
    for tau in verdict_temperatures(adapter):
        if tau is not None and tau != declared:
            rebuilt = rebuild(tau)
            here += _at(rebuilt, make_probe(rebuilt, derive_seed(seed, f"tau {tau:g}")), tau)
    below = []
    for tau in grid_below(adapter, sized[0].layout.n_points):
        rebuilt = rebuild(tau)
        below.append((tau, _at(rebuilt, make_probe(rebuilt, derive_seed(seed, f"tau {tau:g}")), tau, True)))
    lowest = min((t for t in verdict_temperatures(adapter) if t is not None), default=None)
    strict = adapter.strict_float32
    finding = _finding(lowest, below, strict) if below else None
    ranged = adapter.temperatures is not None
    at = ("the declared temperature" if not ranged else
          f"the declared temperatures (tau={declared if declared is not None else 'own'} and the range "
          f"{adapter.temperatures[0]:g}..{adapter.temperatures[1]:g})")
    failing = [r for r in here if not _ok(r)]
    if failing:
        first = failing[0]
        cause = diagnose(here + [r for _, readings in below for r in readings])
        details = {"cause": cause, "cause_text": CAUSES[cause], "finding_below": finding}
        reach = "" if finding is None else f"; below it, {finding_text(finding)}"
        return Verdict(False, math.inf if not first.finite else first.error,
                       _tolerance_text(first if first.finite else max(here, key=lambda r: r.allowed)),
                       f"{_describe(first)} (at {at}): float32 is not accurate at a temperature the loss declares; "
                       f"cause: {CAUSES[cause]}{reach}", where=_where(first), details=details)
    worst = max(here, key=lambda r: r.error / r.allowed if r.allowed else math.inf)
    passed = (f"float32 value and pair weights agree with float64 at {at} on probe (every batch size), nearly "
              f"aligned, spread and inverted points (worst: {worst.quantity}, {worst.where}, {worst.error:.2e})")
    if finding is not None and strict:
        first = next(r for _, readings in below for r in readings if not _ok(r))
        return Verdict(False, math.inf if not first.finite else first.error, _tolerance_text(worst),
                       f"{_describe(first)}, below the declared tau={lowest:g}, and the declaration asks for strict "
                       f"float32 (strict_float32=True or --ssl-strict-float32), so this fails; "
                       f"{finding_text(finding)}; {passed}", where=_where(first), details={"finding": finding})
    if finding is not None:
        return Verdict(True, worst.error, _tolerance_text(worst),
                       f"{passed}; {finding_text(finding)} (a finding below the declared tau={lowest:g}, where the "
                       "loss is not used; declare strict_float32=True or pass --ssl-strict-float32 to fail on it)",
                       where=worst.where, details={"finding": finding})
    if declared is None or not adapter.temperature_kwarg:
        reach = ("probed at the loss's declared temperature only (declare temperature_kwarg to probe the tau grid "
                 "below it for findings)")
    else:
        reach = f"float32 stays accurate on the probed grid below it ({', '.join(f'{t:g}' for t, _ in below)})" \
            if below else "no grid temperature lies below it"
    return Verdict(True, worst.error, _tolerance_text(worst), f"{passed}; {reach}", where=worst.where)
