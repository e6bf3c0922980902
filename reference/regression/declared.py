"""The declaration itself, checked against the measured weights; and per-anchor balance from outside.

``declared_pairs``: a declared pair whose weight is zero at every probe geometry (the probe's points and
"tight" points, where every distance is 1e-3 of the probe's so that every margin or hinge is active) is
declared but unused. For a smooth loss that fails; for a loss that switches pairs off (a hinge: some pair is
zero at one geometry and not at another) it is explained. A two-view declaration that the weights contradict
is named: which layout the active pairs fit, and whether each z0 point's weights sum to zero as they do when
z0 alone holds the anchors ("the weights say one-directional").

``balance_per_anchor`` without ``reduction="none"``: an anchor whose point belongs to no other anchor's pairs
(every query of a per-anchor loss; z0 of a one-directional two-view loss without same-view negatives) owns its
row of the pair weights, so the row's sum is that anchor's imbalance. Where every pair (i, j) may be weighed by
both anchor i and anchor j (SimCLR), a loss returning a mean gives only their sum: moving weight from one anchor
of a pair to the other changes no gradient, so no probe can tell, and the check says exactly that.
"""
from __future__ import annotations

import torch

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.geometry import Probe
from dualnet_ssl.regression.probe import recover_weights
from dualnet_ssl.regression.reference_losses import cosines
from dualnet_ssl.regression.verdicts import Verdict, require_finite, working_dtype
from dualnet_ssl.tolerances import tolerance

TIGHT_SCALE = 1e-3
"""Tight points: distances TIGHT_SCALE times the probe's, far inside any margin a loss is likely to use."""


def noise_floor(value: torch.Tensor, pairs: torch.Tensor) -> float:
    """Weights at or below this are zero: the gradient tolerance of the working precision, relative to the peak."""
    tol = tolerance(working_dtype(value, pairs), "gradient")
    return tol.atol + tol.rtol * float(pairs.abs().max())


def tight(adapter: LossAdapter, probe: Probe) -> Probe:
    """The probe's points pulled together: every distance TIGHT_SCALE times the probe's (cosines near 1 on unit
    rows), so every hinge or margin term is active."""
    g, s2 = probe.gram, TIGHT_SCALE ** 2
    if adapter.on_unit_rows:
        g = cosines(1.0 + s2 * g)                           # a common direction plus the probe's structure
    else:
        g = s2 * g
    return Probe(probe.layout, g, probe.dim, probe.seed)


def weights_at(adapter: LossAdapter, probe: Probe) -> tuple[torch.Tensor, float]:
    """The finite pair weights at the probe and their noise floor (``NonFinite`` for NaN or inf)."""
    found = recover_weights(adapter, probe)
    require_finite("the loss's value or pair weights", found.value, found.pairs)
    return found.pairs, noise_floor(found.value, found.pairs)


def _layout_reading(adapter: LossAdapter, probe: Probe, active: torch.Tensor, weights: torch.Tensor) -> str:
    """For a two-view loss: the layout the weights say, when it is not the declared one ('' otherwise).

    Same-view negatives: pairs within a view carry weight. Direction: with same-view pairs, only the anchors'
    view has them; without, the anchors of a one-directional loss are the view whose points' weights each sum to
    zero (a point in no other anchor's pairs owns its row). No claim is made where the weights do not decide."""
    layout, n = probe.layout, probe.layout.n_samples
    if layout.form != "two_view":
        return ""
    view = torch.arange(2 * n) // n
    within = [bool(active[view == v][:, view == v].any()) for v in (0, 1)]
    tol = tolerance(working_dtype(weights), "gradient")
    owned = weights.sum(1).abs() <= tol.atol + tol.rtol * weights.abs().sum(1)
    rows = [bool(owned[view == v].all()) for v in (0, 1)]
    same_view = within[0] or within[1]
    if within[0] != within[1]:
        anchors = "z0" if within[0] else "z1"
    elif not same_view and rows[0] != rows[1]:
        anchors = "z0" if rows[0] else "z1"
    elif within[0] and within[1]:
        anchors = "both"
    else:
        anchors = None                       # the weights do not decide the direction
    declared_anchors = "both" if adapter.symmetric else "z0"
    wrong_direction = anchors is not None and anchors != declared_anchors
    if not wrong_direction and same_view == adapter.same_view_negatives:
        return ""
    direction = {"both": "symmetric (anchors in both views)", "z0": "one-directional (anchors z0 only)",
                 "z1": "one-directional (anchors z1 only: the views are swapped)"}
    says, fix = [], []
    if wrong_direction:
        says.append(direction[anchors])
        fix.append("the views the other way round" if anchors == "z1" else f"symmetric={anchors == 'both'}")
    if same_view != adapter.same_view_negatives:
        says.append(f"{'with' if same_view else 'without'} same-view negatives")
        fix.append(f"same_view_negatives={same_view}")
    return f"the weights say {', '.join(says)}; declare {', '.join(fix)}"


def declared_pairs(adapter: LossAdapter, probe: Probe) -> Verdict:
    """Every declared pair carries weight at some probe geometry, and the weights fit the declared layout."""
    roles = probe.layout.roles()
    declared = roles != 0
    active = torch.zeros_like(declared)
    seen_off = torch.zeros_like(declared)
    for geometry in (probe, tight(adapter, probe)):
        weights, noise = weights_at(adapter, geometry)
        on = weights.abs() > noise
        active |= on
        seen_off |= ~on
        if geometry is probe:
            at_probe = weights
    if not bool(active.any()):
        raise NotApplicable("the loss's gradient is zero on every pair at the probe and at tight points")
    unused = declared & ~active
    switching = bool((declared & active & seen_off).any())
    reading = _layout_reading(adapter, probe, active, at_probe)
    n_unused, n_declared = int(unused.sum()) // 2, int(declared.sum()) // 2
    tol = tolerance(working_dtype(at_probe), "gradient")
    if n_unused and not switching:
        i, j = (int(k) for k in torch.nonzero(unused)[0])
        kind = "positive" if int(roles[i, j]) == 1 else "negative"
        why = reading or ("a cap on the number of negatives, a mask that drops them, or a declaration listing pairs "
                          f"the loss never weighs (declared: {adapter.describe()})")
        return Verdict(False, n_unused / n_declared, tol,
                       f"declared but unused: {n_unused} of {n_declared} declared pairs get zero weight at the probe "
                       f"and at tight points, e.g. pair ({i}, {j}), a declared {kind}; {why}")
    if reading:
        return Verdict(False, 1.0, tol, f"the declared layout ({adapter.describe()}) is contradicted: {reading}")
    note = (f"; {n_unused} declared pairs were never active, but the loss switches pairs off (a hinge or margin: "
            "some pair is zero at one geometry and not at another), so unused cannot be told from inactive"
            if n_unused else "")
    return Verdict(True, 0.0, tol, f"each of the {n_declared} declared pairs carries weight at the probe or at "
                   f"tight points, and the weights fit the declared layout{note}")


def private_anchors(layout) -> torch.Tensor:
    """(A,) bool: the anchor's point is in no other anchor's pairs, so its row of the pair weights is its own."""
    a = layout.anchors.numel()
    used = torch.zeros(a, layout.n_points, dtype=torch.bool)
    rows = torch.arange(a)[:, None]
    for cols in (layout.positives.reshape(a, -1), layout.negatives.reshape(a, -1), layout.anchors[:, None]):
        used[rows.expand_as(cols), cols] = True
    counts = used[:, layout.anchors].sum(0)       # how many anchors' pairs (or anchor slots) hold each anchor point
    return counts == 1


def anchor_rows(adapter: LossAdapter, probe: Probe) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(sum, sum of |.|) of each anchor's own weights read from its row, or None when not every anchor owns its
    row (see the module docstring)."""
    if not bool(private_anchors(probe.layout).all()):
        return None
    weights, _ = weights_at(adapter, probe)
    rows = weights[probe.layout.anchors]
    return rows.sum(1), rows.abs().sum(1)


def not_decidable(adapter: LossAdapter, balanced_in_total: bool, detail: str) -> NotApplicable:
    total = "balanced in total" if balanced_in_total else "NOT balanced in total (see balance_total)"
    return NotApplicable(
        f"{total} ({detail}); per-anchor not decidable: in this layout ({adapter.describe()}) a pair (i, j) can be "
        "weighed by anchor i and by anchor j, and a loss that returns one "
        f"{adapter.reduction} gives only their sum, so weight moved from one anchor of a pair to the other changes "
        "no gradient and no probe can see it; a loss that returns one value per anchor, declared reduction='none', "
        "is checked anchor by anchor")
