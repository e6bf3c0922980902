"""Checks for the conventions of real code (docs/THEORY.md §5a): gradient routing, several positives per anchor,
inputs that are unit rows. ``loss_properties`` calls these; each returns a ``Verdict`` or raises NotApplicable.
"""
from __future__ import annotations

import torch

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.engine import value_and_gradient
from dualnet_ssl.regression.geometry import Probe
from dualnet_ssl.regression.probe import flow_from_point_gradients, recover_weights
from dualnet_ssl.regression.shapes import equidistant_positives
from dualnet_ssl.regression.verdicts import Verdict, require_finite, working_dtype
from dualnet_ssl.tolerances import tolerance

UNIT_INPUTS_REASON = ("the loss declares unit_inputs=True: its caller L2-normalises, so it is defined on unit rows "
                      "only and need not be invariant to rescaling or translating them; it is probed on unit rows "
                      "(r = 1 - cos), and rotation invariance, balance, signs and the reference still apply")

ROUTED_SYMMETRY_REASON = ("the declaration routes the gradient (gradient_to='anchors' or detached negatives, docs/THEORY.md "
                          "§5a), so Z^T dL/dZ is not symmetric by design; the property gradient_routing checks the "
                          "routed gradient instead")


def symmetry_not_applicable(adapter: LossAdapter, probe: Probe) -> str | None:
    """Why gradient_symmetry does not apply to this declaration, or None when it does."""
    return ROUTED_SYMMETRY_REASON if adapter.gradient_to == "anchors" or probe.layout.routed else None


def _points(mask: torch.Tensor) -> str:
    idx = torch.nonzero(mask).flatten().tolist()
    return ", ".join(map(str, idx[:8])) + (", ..." if len(idx) > 8 else "")


def _named(layout, mask: torch.Tensor) -> str:
    """The points of ``mask`` by input: 'k (points 4, 5), queue (points 8, ...)'."""
    parts = [f"{name} (points {_points(mask & (torch.arange(layout.n_points)[:, None] == rows).any(1))})"
             for name, rows in layout.input_points().items() if bool(mask[rows].any())]
    return ", ".join(parts)


def gradient_routing(adapter: LossAdapter, probe: Probe) -> Verdict:
    """The gradient reaches the points declared live, and each live point's gradient is a weighted sum of its
    pair directions dr_ij/dz_i (docs/THEORY.md §5a), so the pair weights are read off it exactly."""
    layout = probe.layout
    z = probe.points().detach().clone().requires_grad_(True)
    value, grad = value_and_gradient(adapter, z, layout)
    if grad is None or not bool((grad != 0).any()):
        raise NotApplicable("the loss's gradient is zero at every point of the probe; rerun with another seed")
    tol = tolerance(working_dtype(value, grad), "gradient")
    norms = grad.double().norm(dim=1)
    noise = tol.atol + tol.rtol * float(norms.max())
    live, reached = layout.live, norms > noise
    if not bool((reached & live).any()):
        return Verdict(False, 1.0, tol, f"no gradient reaches the points declared live ({_points(live)}); it flows "
                                        f"only into points declared detached ({_points(reached & ~live)}): the "
                                        f"stop-gradient is on the wrong side (declared: {adapter.describe()})")
    leaked = reached & ~live
    if adapter.detached_by == "loss" and bool(leaked.any()):
        share = float(norms[leaked].max()) / float(norms.max())
        return Verdict(False, share, tol, f"the loss is declared to stop the gradient itself (detached_by='loss'), "
                                          f"but gradient reaches points declared detached: {_named(layout, leaked)} "
                                          f"(largest |dL/dz| there is {share:.3e} of the largest); a detach() is "
                                          f"missing or on the wrong tensor (declared: {adapter.describe()})")
    _, residual = flow_from_point_gradients(grad, z.detach(), adapter, live, adapter.unit_points(layout))
    notes = []
    if bool((reached & ~live).any()):
        notes.append(f"the loss itself passes gradient into points declared detached ({_points(reached & ~live)}); "
                     "they are ignored, as the declared stop-gradient does in training")
    if bool((live & ~reached).any()):
        notes.append(f"points declared live receive no gradient ({_points(live & ~reached)}): inactive margins do "
                     "this; so does a detach(): if it is by design, declare gradient_to or detached_negatives")
    message = (f"gradient reaches {int((reached & live).sum())} of {int(live.sum())} live points; share of it not "
               f"explained by pair weights: {residual:.3e}" + "".join("; " + n for n in notes))
    if residual > tol.rtol:
        message += ("; the gradient is not that of a function of pairwise distances (of 1 - cos on unit rows): "
                    "check normalises/unit_inputs, or a term that depends on the raw coordinates")
    return Verdict(residual <= tol.rtol, residual, tol, message)


def positive_total_signs(adapter: LossAdapter, probe: Probe) -> Verdict | None:
    """Signs in the "out" form of several positives (docs/THEORY.md §5a): every negative weight < 0, and each
    anchor's positive total >= 0 (the batch's, when per-anchor weights are not observable), since one positive may
    be repelled by design. None when every positive weight must itself be > 0 (one positive, or the "in" form)."""
    if adapter.positives_per_anchor == 1 or adapter.reference == "supcon_in":
        return None
    layout = probe.layout
    found = recover_weights(adapter, probe, per_anchor=True)
    weights = found.pairs
    if not bool((weights != 0).any()):
        raise NotApplicable("the loss's gradient is zero on every pair of the probe; rerun with another seed")
    tol = tolerance(working_dtype(found.value, weights), "gradient")
    peak = float(weights.abs().max())
    noise = tol.atol + tol.rtol * peak
    roles = layout.roles()
    wrong_neg = (roles == -1) & (weights > noise)
    if found.per_anchor is not None or adapter.gradient_to == "anchors":
        own = (found.per_anchor[torch.arange(len(layout.anchors)), layout.anchors] if found.per_anchor is not None
               else found.flow[layout.anchors])
        totals, scope = own.gather(1, layout.positives).sum(1), "each anchor's positive total"
    else:
        totals, scope = torch.triu(weights * (roles == 1), diagonal=1).sum().reshape(1), "the batch's positive total"
    repelled = int(((roles == 1) & (weights < -noise)).sum()) // 2
    def message(relation: str) -> str:
        return (f"'out' form, {adapter.positives_per_anchor} positives per anchor (docs/THEORY.md §5a): {scope} "
                f"{relation} 0 (smallest {float(totals.min()):.3e}) and every negative weight < 0; {repelled} positive "
                "pairs repelled, which the 'out' form allows")
    if bool(wrong_neg.any()):
        i, j = (int(k) for k in torch.nonzero(wrong_neg)[0])
        return Verdict(False, float(weights[wrong_neg].max()) / peak, tol,
                       f"{int(wrong_neg.sum()) // 2} declared negative pairs are attracted; e.g. pair ({i}, {j}) has "
                       f"dL/dr = {float(weights[i, j]):.3e} > 0 (Theorem 2: < 0 on negatives); check the labels' "
                       f"mask (declared: {adapter.describe()})")
    if float(totals.min()) < -noise:
        return Verdict(False, -float(totals.min()) / peak, tol, message("<")
                       + "; the positives are pushed apart overall: a sign error, or positives taken from the "
                         "wrong mask")
    return _no_repelled_positive_when_equidistant(adapter, probe, message(">="))


def _no_repelled_positive_when_equidistant(adapter: LossAdapter, probe: Probe, message: str) -> Verdict:
    """At points where each anchor's positives are equally far from it (``shapes.equidistant_positives``) every
    positive weight must be >= 0 in either form of several positives: a positive repelled there is treated as a
    negative, whether or not a reference is declared."""
    found = recover_weights(adapter, equidistant_positives(adapter, probe))
    require_finite("the loss's value or pair weights at equidistant positives", found.value, found.pairs)
    weights, roles = found.pairs, probe.layout.roles()
    tol = tolerance(working_dtype(found.value, weights), "gradient")
    peak = float(weights.abs().max())
    repelled = (roles == 1) & (weights < -(tol.atol + tol.rtol * peak))
    if not bool(repelled.any()):
        return Verdict(True, 0.0, tol, message + "; at points where each anchor's positives are equally far from it, "
                                                 "no positive is repelled")
    i, j = (int(k) for k in torch.nonzero(repelled & (weights == weights[repelled].min()))[0])
    return Verdict(False, -float(weights[i, j]) / peak, tol,
                   f"{int(repelled.sum()) // 2} declared positive pairs are repelled at points where each anchor's "
                   f"positives are all equally far from it; e.g. pair ({i}, {j}) has dL/dr = "
                   f"{float(weights[i, j]):.3e} "
                   f"< 0. There each positive's softmax share is at most 1/|P|, so neither the 'out' nor the 'in' form "
                   f"(docs/THEORY.md §5a) repels any positive: the loss treats some positives as negatives (a view "
                   f"left out of the positive mask, an index off by one?) (declared: {adapter.describe()})")

