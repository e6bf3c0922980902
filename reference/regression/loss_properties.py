"""The properties the theory needs of a loss, probed as a black box (docs/REGRESSION.md, "The properties"); each
is a check ``(adapter, probe) -> Verdict`` registered in ``properties.REGISTRY``."""
from __future__ import annotations

import torch

from dualnet_ssl.regression.conventions import positive_total_signs, symmetry_not_applicable
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.declared import anchor_rows, noise_floor, not_decidable
from dualnet_ssl.regression.engine import evaluate
from dualnet_ssl.regression.geometry import Probe
from dualnet_ssl.regression.probe import recover_weights
from dualnet_ssl.regression.reference_losses import gram_distances
from dualnet_ssl.regression.shapes import WIDER, widened
from dualnet_ssl.regression.signatures import INPUTS
from dualnet_ssl.regression.verdicts import Verdict, compare, require_finite, working_dtype
from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.seeding import derive_seed, make_generator
from dualnet_ssl.tolerances import Tolerance, tolerance


def _require_gradient(weights: torch.Tensor) -> None:
    if not bool((weights != 0).any()):
        raise NotApplicable("the loss's gradient is zero on every pair of the probe (e.g. every margin is met), "
                            "so there is nothing to weigh; rerun with another seed")


def rotation_invariance(adapter: LossAdapter, probe: Probe) -> Verdict:
    """L(Z Q) = L(Z) for a random rotation Q; and, unless the loss declares its ``dim``, the same points embedded
    isometrically in WIDER times as many dimensions (module ``shapes``): a function of pairwise similarities sees
    no difference, a factor that depends on the embedding width does."""
    z = probe.points()
    g = make_generator(derive_seed(probe.seed, "rotation"))
    rotation, _ = torch.linalg.qr(torch.randn(probe.dim, probe.dim, generator=g, dtype=z.dtype))
    unchanged = evaluate(adapter, z, probe.layout)
    v = compare(evaluate(adapter, z @ rotation, probe.layout), unchanged,
                what="loss after a random rotation of every point vs before", kind="exact")
    if not v.ok:
        return Verdict(False, v.measured, v.tolerance, v.message + (
            "; the loss is not a function of pairwise similarities (does it use raw coordinates, a fixed projection "
            "or a sort?)"))
    if adapter.dim is not None:
        return v
    width = WIDER * probe.dim
    w = compare(evaluate(adapter, widened(z, width, probe.seed), probe.layout), unchanged, kind="exact",
                what=f"loss with the same points embedded in {width} dimensions vs in {probe.dim}")
    if w.ok:
        return Verdict(True, max(v.measured, w.measured), v.tolerance, f"{v.message}; {w.message}")
    return Verdict(False, w.measured, w.tolerance, f"{w.message}; the points and every pairwise similarity are the "
                   f"same, so the loss depends on the embedding width itself: the factor scales with the embedding "
                   f"width (a division by D, a mean over the feature axis?)")


def pairwise_structure(adapter: LossAdapter, probe: Probe) -> Verdict:
    if adapter.on_unit_rows and not adapter.normalised_inputs:
        raise NotApplicable("declared unit_inputs=True: the loss is defined on unit rows only, so neither rescaling "
                            "a row nor translating the points is a move it must ignore; rotation_invariance still "
                            "checks that it depends on cosines alone")
    z = probe.points()
    g = make_generator(derive_seed(probe.seed, "pairwise structure"))
    if not adapter.normalises:
        moved = z + torch.randn(z.shape[1], generator=g, dtype=z.dtype)
        v = compare(evaluate(adapter, moved, probe.layout), evaluate(adapter, z, probe.layout),
                    what="loss after translating every point by one vector vs before", kind="exact")
        hint = ("; the loss is not a function of pairwise distances; if it normalises its inputs, declare "
                "normalises=True (then r = 1 - cos)")
        return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))
    # powers of two: the rescaling is exact, so a normalising loss returns the same bits; only the rows of the
    # inputs the loss normalises are rescaled (those declared unit_inputs arrive unit and stay so), one input at a time
    factors = 2.0 ** torch.randint(-2, 3, (z.shape[0], 1), generator=g).to(z.dtype)
    unchanged = evaluate(adapter, z, probe.layout)
    inputs = probe.layout.input_points()
    verdicts = []
    for name in adapter.normalised_inputs:
        rows = torch.zeros(z.shape[0], 1, dtype=torch.bool)
        rows[inputs[name]] = True
        moved = torch.where(rows, z * factors, z)
        verdicts.append((name, compare(evaluate(adapter, moved, probe.layout), unchanged, kind="exact",
                                       what=f"loss after rescaling each row of {name} by a power of two vs before")))
    name, v = max(verdicts, key=lambda nv: (not nv[1].ok, nv[1].measured or 0.0))
    if v.ok:
        kept = (f"; rows of {', '.join(adapter.unit_row_inputs)} arrive as unit rows and were not rescaled"
                if adapter.unit_row_inputs else "")
        return Verdict(True, v.measured, v.tolerance, v.message + kept)
    breaking = [n for n, w in verdicts if not w.ok]
    where = f"input {name}" if len(INPUTS[probe.layout.form]) > 1 else "its input"
    hint = (f"; the loss is declared to normalise {where}, but it changes when a row of {name} is rescaled "
            f"(rescaling breaks it in: {', '.join(breaking)}): it uses an unnormalised dot product or distance on "
            f"{name}; if {name} arrives as unit rows and is not normalised again, declare unit_inputs=['{name}']")
    return Verdict(False, v.measured, v.tolerance, v.message + hint)


def gradient_symmetry(adapter: LossAdapter, probe: Probe) -> Verdict:
    if symmetry_not_applicable(adapter, probe):
        raise NotApplicable(symmetry_not_applicable(adapter, probe))
    z = probe.points().requires_grad_(True)
    value = evaluate(adapter, z, probe.layout)
    (grad,) = torch.autograd.grad(value.sum(), z)
    moment = z.detach().T @ grad
    v = compare(moment, moment.T, what="Z^T dL/dZ vs its transpose", kind="gradient", also=(value,))
    hint = ("; autograd's gradient is not the gradient of any function of pairwise similarities: a detach() or "
            "stop-gradient on some of the pairs (e.g. on the negatives) drops part of each pair's gradient")
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))


def _imbalance(weights: torch.Tensor) -> tuple[float, float]:
    upper = torch.triu(weights, diagonal=1)
    return float(upper.sum()), float(upper.abs().sum())


def _imbalance_hint(weights: torch.Tensor, probe: Probe, pos: float, neg: float, tol: Tolerance) -> str:
    """The cause class the weights point to: balance in the distance sqrt(2r) (a non-linear function of r), else
    the side that outweighs the other."""
    in_distance, scale = _imbalance(weights * (2 * gram_distances(probe.gram).clamp_min(0.0)).sqrt())
    if abs(in_distance) <= tol.atol + tol.rtol * scale:
        return ("; the weights balance in the distance d = ||z_i - z_j|| = sqrt(2r) (sum of dL/dd = "
                f"{in_distance:.1e}) but not in r: the loss is a non-linear function of r (e.g. a triplet or margin "
                "loss on the distance rather than its square); Theorem 2 needs dL/dr to balance, so use r or r/tau")
    if pos + neg > 0:
        return ("; the positives outweigh the negatives: an extra pull on positives, an unmasked self-similarity or "
                "an extra constant logit in the denominator (its share of the softmax pushes nothing), per-anchor "
                "weights that do not cancel, or a non-linear function of r")
    return ("; the negatives outweigh the positives: a push term outside the softmax, the positive's gradient "
            "scaled down or detached, per-anchor weights that do not cancel, or a non-linear function of r")


def balance_total(adapter: LossAdapter, probe: Probe) -> Verdict:
    found = recover_weights(adapter, probe)
    require_finite("the loss's value or pair weights", found.value, found.pairs)
    weights = found.pairs
    _require_gradient(weights)
    total, scale = _imbalance(weights)
    tol = tolerance(working_dtype(found.value, weights), "gradient")
    ok = abs(total) <= tol.atol + tol.rtol * scale
    roles = probe.layout.roles()
    pos, neg, other = (float(torch.triu(weights * (roles == role), diagonal=1).sum()) for role in (1, -1, 0))
    message = (f"sum over all pairs of dL/dr = {total:.3e} = positives {pos:.3e} + declared negatives {neg:.3e} + "
               f"undeclared pairs {other:.3e} (sum |dL/dr| = {scale:.3e}); Theorem 2 needs it to be 0")
    if not ok:
        message += "; the loss is not balanced, so its gradient is not a covariance operator"
        message += _imbalance_hint(weights, probe, pos, neg, tol)
    return Verdict(ok, abs(total) / scale, tol, message)


def _per_anchor_verdict(sums: list[tuple[float, float]], anchors, tol: Tolerance, how: str, hint: str = ""
                        ) -> Verdict:
    rel = [abs(t) / s if s > 0 else 0.0 for t, s in sums]
    worst = max(range(len(sums)), key=lambda a: rel[a])
    ok = all(abs(t) <= tol.atol + tol.rtol * s for t, s in sums)
    message = (f"worst anchor {int(anchors[worst])}: sum of its dL_a/dr = {sums[worst][0]:.3e} (sum |dL_a/dr| = "
               f"{sums[worst][1]:.3e}), {how}; Theorem 2 needs 0 for every anchor")
    if not ok:
        message += ("; the loss balances only over the batch, not per anchor: per-anchor weights (e.g. each "
                    "anchor's positive reweighted) that cancel only in total, or a term some anchors lack" + hint)
    return Verdict(ok, rel[worst], tol, message)


def balance_per_anchor(adapter: LossAdapter, probe: Probe) -> Verdict:
    if adapter.reduction == "none":
        found = recover_weights(adapter, probe, per_anchor=True)
        require_finite("the loss's per-anchor values or weights", found.value, found.per_anchor)
        _require_gradient(found.per_anchor)
        tol = tolerance(working_dtype(found.value, found.per_anchor), "gradient")
        return _per_anchor_verdict([_imbalance(w) for w in found.per_anchor], probe.layout.anchors, tol,
                                   "from the per-anchor values (reduction='none')")
    rows = anchor_rows(adapter, probe)
    if rows is None:
        total = balance_total(adapter, probe)
        raise not_decidable(adapter, total.ok, f"relative imbalance {total.measured:.3e} over all pairs")
    sums, scales = rows
    _require_gradient(scales)
    tol = tolerance(working_dtype(sums), "gradient")
    hint = ("; or the loss uses z1's points as anchors too, which the one-directional declaration says it does "
            "not (a symmetric loss declared symmetric=False)" if probe.layout.form == "two_view" else "")
    return _per_anchor_verdict(list(zip(sums.tolist(), scales.tolist())), probe.layout.anchors, tol,
                               "read from its row of the pair weights (its point is in no other anchor's pairs)", hint)


def _weights_and_roles(adapter: LossAdapter, probe: Probe):
    """(pair weights, their noise floor, its tolerance, the declared roles) for the sign and zero checks."""
    found = recover_weights(adapter, probe)
    require_finite("the loss's value or pair weights", found.value, found.pairs)
    _require_gradient(found.pairs)
    tol = tolerance(working_dtype(found.value, found.pairs), "gradient")
    return found.pairs, noise_floor(found.value, found.pairs), tol, probe.layout.roles()


def weight_signs(adapter: LossAdapter, probe: Probe) -> Verdict:
    out_form = positive_total_signs(adapter, probe)    # several positives, "out" form: docs/THEORY.md §5a
    if out_form is not None:
        return out_form
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


def undeclared_pairs(adapter: LossAdapter, probe: Probe) -> Verdict:
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
