"""Black-box probing of a loss and a network for the properties the theory needs (docs/REGRESSION.md).

The probe (THEORY.md §3-5). Choose an SPD Gram matrix G of the n points a loss call needs, embed
them as ``Z = cholesky(G)`` padded with zero columns to ``D >= n``, evaluate the loss and take
autograd with respect to G. Because ``r_ij = (G_ii + G_jj)/2 - G_ij``, a loss of pairwise distances has

    dL/dr_ij = -2 sym(dL/dG)_ij   (i != j),

the weight of every pair, found without knowing the loss's internals. On unit rows
(``G_ii = 1``) the same formula gives ``dL/dr_ij`` with ``r = 1 - cos``, the distance a normalising
loss sees. Each check returns a ``PropertyResult``: pass, fail or not applicable, with the measured
figure, the tolerance from ``reference.tolerances`` and the seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from reference.adapters import (Layout, LossAdapter, LossSubject, NetAdapter, NetSubject, PairLossBatch,
                                anchor_distances, anchor_weight, reduce_anchors)
from reference.compare import assert_identity, relative_error
from reference.connection import connection_times, connection_transpose_times
from reference.distributions import gaussian_augmented
from reference.runtime import one_intra_op_thread
from reference.errors import BadInput, IdentityViolation, NotApplicable
from reference.losses import infonce, infonce_weights, pair_distance, simple
from reference.networks import check_theorem_class, layer_names, make_generator
from reference.operators import laplacian, residue
from reference.tolerances import Tolerance, tolerance

PROBE_SAMPLES = {"two_view": 6, "per_anchor": 4}
"""Samples N per probe: 12 points for a two-view batch; 4 queries + 4 positives + negatives per anchor."""
POSITIVE_NOISE = 1.0
"""A positive pair's points are c + POSITIVE_NOISE * e (c, e standard normal): cos about 0.5 against the
negatives' 0 +- 0.3, so hard negatives exist and margin losses are active on some triplets."""
TEMPERATURE_SPREAD = 2.0
"""When a loss declares its temperature tau, the probe's structure is scaled by TEMPERATURE_SPREAD sqrt(tau)
(at most 1), so r / tau (or cos / tau) differs by a few units between pairs and no pair's weight underflows."""
STABILITY_TEMPERATURE = 0.01
"""The temperature of the float32 stability probe (issue: tau = 0.01): e^{1/tau} = e^100 overflows float32."""
ALIGNED_NOISE = 1e-2
"""Nearly aligned points: u + ALIGNED_NOISE * e, so cosines are within 1e-4 of 1."""
SPREAD_NORM = 2.0
"""Spread points of norm about 2: squared distances up to 8, so r / tau reaches 800 at tau = 0.01."""
THEOREM3_SIGMA = 0.3
"""Augmentation spread of the Theorem 3 distribution (any sigma works: the identity is exact)."""
PAIRS_THEOREM1 = 3
"""Pairs summed in the Theorem 1 check."""

LOSS_PROPERTIES = ("rotation_invariance", "pairwise_structure", "gradient_symmetry", "balance_total",
                   "balance_per_anchor", "weight_signs", "undeclared_pairs", "reference_value", "reference_weights",
                   "stability_float32")
NET_PROPERTIES = ("theorem_class", "theorem1_pair", "theorem3_operator")
COVARIANCE_PROPERTY = "covariance_form"
STATUSES = ("pass", "fail", "not_applicable")


@dataclass(frozen=True)
class PropertyResult:
    """One property's verdict; ``record()`` is its line in the --ssl-report JSON."""

    prop: str
    subject: str
    status: str
    measured: float | None
    tolerance: str | None
    seed: int
    message: str
    network: str | None = None

    def summary(self) -> str:
        on = self.subject + (f" on network {self.network}" if self.network else "")
        if self.status == "not_applicable":
            return f"{self.prop} not applicable to {on}: {self.message}"
        figure = "" if self.measured is None else f"; measured {self.measured:.3e}, allowed {self.tolerance}"
        return f"{self.prop} {'passed' if self.status == 'pass' else 'FAILED'} for {on}: {self.message}{figure}; " \
               f"seed {self.seed}"

    def record(self, reproduce: str = "") -> dict:
        return {"property": self.prop, "subject": self.subject, "network": self.network, "status": self.status,
                "measured": self.measured, "tolerance": self.tolerance, "seed": self.seed,
                "message": self.message, "reproduce": reproduce}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    measured: float | None
    tolerance: Tolerance | str | None
    message: str


def _run(prop: str, subject: str, seed: int, body: Callable[[], Verdict], network: str | None = None):
    """Run one check: a verdict, NotApplicable -> not_applicable, any other error -> a failure that says so."""
    try:
        with one_intra_op_thread():
            v = body()
    except NotApplicable as err:
        return PropertyResult(prop, subject, "not_applicable", None, None, seed, str(err), network)
    except Exception as err:   # the user's code raised, or returned something unusable: report, never crash
        return PropertyResult(prop, subject, "fail", None, None, seed,
                              f"the check could not run: {type(err).__name__}: {err}", network)
    return PropertyResult(prop, subject, "pass" if v.ok else "fail", v.measured,
                          None if v.tolerance is None else str(v.tolerance), seed, v.message, network)


def _working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The precision a check is held to: float64 only when every tensor involved is float64, so a loss that
    returns float32 (it computes in float32 internally) is held to float32 tolerances, never falsely failed."""
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def _compare(actual: torch.Tensor, expected: torch.Tensor, *, what: str, kind: str,
             also: tuple[torch.Tensor, ...] = ()) -> Verdict:
    """actual == expected within the table's tolerance for the working precision of actual, expected and ``also``."""
    tol = tolerance(_working_dtype(actual, expected, *also), kind)
    try:
        rel = assert_identity(actual, expected, what=what, kind=kind, tol=tol)
        return Verdict(True, rel, tol, f"{what}: relative error {rel:.3e}")
    except IdentityViolation as err:
        finite = bool(torch.isfinite(actual).all() and torch.isfinite(expected).all())
        rel = relative_error(actual.detach().double(), expected.detach().double()) if finite else math.inf
        return Verdict(False, rel, tol, str(err).replace(f"; allowed {tol}", ""))   # the summary states it once


# ---- the probe ----

@dataclass(frozen=True)
class Probe:
    """n points given by their Gram matrix, embedded in ``dim >= n`` columns."""

    layout: Layout
    gram: torch.Tensor
    dim: int
    seed: int

    def points(self, gram: torch.Tensor | None = None) -> torch.Tensor:
        """Z = cholesky(G), padded with zero columns to ``dim``: rows are the points, Z Z^T = G."""
        lower = torch.linalg.cholesky(self.gram if gram is None else gram)
        return nn.functional.pad(lower, (0, self.dim - lower.shape[1]))


def _fitting_layout(adapter: LossAdapter, n_points_max: int | None, n_samples: int) -> Layout:
    """The probe layout with the most samples (at most ``n_samples``) whose points fit in ``n_points_max``."""
    for n in range(n_samples, 1, -1):
        layout = adapter.layout(n)
        if n_points_max is None or layout.n_points <= n_points_max:
            return layout
    raise NotApplicable(f"pair weights are identifiable only with at least as many embedding dimensions as points; "
                        f"{n_points_max} dimensions are fewer than the {adapter.layout(2).n_points} points of the "
                        "smallest batch (2 samples)")


def make_probe(adapter: LossAdapter, seed: int, dtype: torch.dtype = torch.float64) -> Probe:
    """Points with positives nearer each other than negatives, spread over about one temperature; for a loss that
    normalises, unit rows with cosines around 0."""
    layout = _fitting_layout(adapter, adapter.dim, PROBE_SAMPLES[adapter.form])
    n = layout.n_points
    g = make_generator(seed)
    centres = torch.randn(int(layout.groups.max()) + 1, n, generator=g, dtype=torch.float64)
    noise = torch.randn(n, n, generator=g, dtype=torch.float64)
    z = (centres[layout.groups] + POSITIVE_NOISE * noise) / math.sqrt(n * (1 + POSITIVE_NOISE ** 2))
    spread = 1.0 if adapter.temperature is None else min(1.0, TEMPERATURE_SPREAD * math.sqrt(adapter.temperature))
    if adapter.normalises:
        # nearly orthogonal unit rows (cos about 0, as for random embeddings) plus the structure above
        z = nn.functional.normalize(torch.eye(n, dtype=torch.float64) + spread * nn.functional.normalize(z, dim=1),
                                    dim=1)
    else:
        z = spread * z * (0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64))
    return Probe(layout, (z @ z.T).to(dtype), max(n, adapter.dim or 0), seed)


@dataclass(frozen=True)
class PairWeights:
    value: torch.Tensor                  # the loss at the probe: scalar, or (A,) per anchor
    pairs: torch.Tensor                  # (n, n) symmetric, zero diagonal: dL/dr_ij
    per_anchor: torch.Tensor | None      # (A, n, n): dL_a/dr_ij, when the loss returns per-anchor values


def pair_weights_from_gram_gradient(grad: torch.Tensor) -> torch.Tensor:
    """dL/dr_ij = -2 sym(dL/dG)_ij off the diagonal (r_ij = (G_ii + G_jj)/2 - G_ij); zero diagonal."""
    weights = -(grad + grad.T)
    return weights - torch.diag(torch.diagonal(weights))


def recover_weights(adapter: LossAdapter, probe: Probe, per_anchor: bool = False) -> PairWeights:
    """The loss's value and its weight dL/dr on every pair of the probe, by autograd through cholesky(G);
    with ``per_anchor`` (and a loss declared reduction='none') also each anchor's own weights."""
    gram = probe.gram.detach().clone().requires_grad_(True)
    value = adapter.evaluate(probe.points(gram), probe.layout)
    if not value.requires_grad:
        raise BadInput("the loss's value does not depend differentiably on its inputs (no autograd graph)")

    def weights_of(scalar: torch.Tensor) -> torch.Tensor:
        (grad,) = torch.autograd.grad(scalar, gram, retain_graph=True, allow_unused=True)
        return pair_weights_from_gram_gradient(torch.zeros_like(gram) if grad is None else grad)

    anchors = torch.stack([weights_of(v) for v in value]) if per_anchor and adapter.reduction == "none" else None
    return PairWeights(value.detach(), weights_of(value.sum()), anchors)


def assemble_pair_weights(layout: Layout, beta: torch.Tensor, beta_k: torch.Tensor, scale: float) -> torch.Tensor:
    """(n, n) dL/dr_ij from per-anchor weights: ``scale * beta_a`` on (a, positive), ``-scale * beta_ak`` on
    (a, negative k), summed over the anchors that share a pair (THEORY.md §5 sign convention)."""
    weights = torch.zeros(layout.n_points, layout.n_points, dtype=beta.dtype)
    weights.index_put_((layout.anchors, layout.positives), scale * beta, accumulate=True)
    weights.index_put_((layout.anchors[:, None].expand_as(layout.negatives), layout.negatives), -scale * beta_k,
                       accumulate=True)
    return weights + weights.T


def reference_pair_weights(adapter: LossAdapter, layout: Layout, z: torch.Tensor) -> torch.Tensor:
    """dL/dr_ij of the declared NT-Xent/InfoNCE (L_nce^tau / tau per anchor) in closed form (THEORY.md §5)."""
    tau = float(adapter.temperature)
    beta, beta_k = infonce_weights(*anchor_distances(layout, z, adapter.normalises), tau=tau)
    return assemble_pair_weights(layout, beta, beta_k, anchor_weight(layout, adapter.reduction) / tau)


def _noise_floor(found: PairWeights) -> tuple[float, Tolerance]:
    tol = tolerance(_working_dtype(found.value, found.pairs), "gradient")
    return tol.atol + tol.rtol * float(found.pairs.abs().max()), tol


def _require_gradient(weights: torch.Tensor) -> None:
    if not bool((weights != 0).any()):
        raise NotApplicable("the loss's gradient is zero on every pair of the probe (e.g. every margin is met), "
                            "so there is nothing to weigh; rerun with another seed")


# ---- the loss properties ----

def _rotation_invariance(adapter: LossAdapter, probe: Probe) -> Verdict:
    z = probe.points()
    rotation, _ = torch.linalg.qr(torch.randn(probe.dim, probe.dim, generator=make_generator(probe.seed + 1),
                                              dtype=z.dtype))
    v = _compare(adapter.evaluate(z @ rotation, probe.layout), adapter.evaluate(z, probe.layout),
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
    v = _compare(adapter.evaluate(moved, probe.layout), adapter.evaluate(z, probe.layout), what=what, kind="exact")
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))


def _gradient_symmetry(adapter: LossAdapter, probe: Probe) -> Verdict:
    z = probe.points().requires_grad_(True)
    value = adapter.evaluate(z, probe.layout)
    (grad,) = torch.autograd.grad(value.sum(), z)
    moment = z.detach().T @ grad
    v = _compare(moment, moment.T, what="Z^T dL/dZ vs its transpose", kind="gradient", also=(value,))
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
    tol = tolerance(_working_dtype(found.value, weights), "gradient")
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
    tol = tolerance(_working_dtype(found.value, per_anchor), "gradient")
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


def _require_reference(adapter: LossAdapter) -> None:
    if adapter.reference is None:
        raise NotApplicable("the adapter declares no reference loss; declare reference='infonce' with its temperature "
                            "to compare value and weights with L_nce^tau / tau (THEORY.md §4)")


def _reference_value(adapter: LossAdapter, probe: Probe) -> Verdict:
    _require_reference(adapter)
    z = probe.points()
    expected = PairLossBatch(infonce(adapter.temperature), adapter, 1.0 / adapter.temperature)
    want = reduce_anchors(expected.values(probe.layout, z), adapter.reduction)
    v = _compare(adapter.evaluate(z, probe.layout), want, kind="exact",
                 what=f"loss value vs reference L_nce/tau (tau={adapter.temperature:g}, {adapter.reduction} over "
                      f"{probe.layout.anchors.numel()} anchors)")
    hint = ("; a wrong temperature (applied twice?), a sum where mean is declared, or a masking bug changes the "
            "value")
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))


def _reference_weights(adapter: LossAdapter, probe: Probe) -> Verdict:
    _require_reference(adapter)
    got = recover_weights(adapter, probe)
    v = _compare(got.pairs, reference_pair_weights(adapter, probe.layout, probe.points()), kind="gradient",
                 what=f"per-pair weights dL/dr vs reference L_nce/tau (tau={adapter.temperature:g}), pair (i, j)",
                 also=(got.value,))
    hint = "; the value may agree while the gradient does not: a detach() or a block-wise normalisation shows here"
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))


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
    layout = _fitting_layout(used, used.dim, PROBE_SAMPLES[used.form])
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
                "undeclared_pairs": _undeclared_pairs, "reference_value": _reference_value,
                "reference_weights": _reference_weights}


def check_loss(subject: LossSubject, prop: str, seed: int) -> PropertyResult:
    """One loss property (see LOSS_PROPERTIES) of ``subject`` at ``seed``."""
    if prop not in LOSS_PROPERTIES:
        raise BadInput(f"unknown loss property {prop!r}; known: {LOSS_PROPERTIES}")

    def body() -> Verdict:
        adapter = subject.build()
        if prop == "stability_float32":
            return check_stability(adapter, subject.at_temperature(STABILITY_TEMPERATURE), seed)
        return _LOSS_CHECKS[prop](adapter, make_probe(adapter, seed))

    return _run(prop, subject.name, seed, body)


# ---- the network properties ----

def covariance_times(net: nn.Module, name: str, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """1/2 sum_ij s_ij (K_i - K_j)(K_i - K_j)^T w_l = sum_ij Lap(s)_ij K_i K_j^T w_l, flat, without forming K.

    ``K_j^T w_l`` comes from a Jacobian-vector product, not from the forward pass: it equals f_L(x_j) only
    for a network that is homogeneous in W_l, so the identity tests the theorems' class too.
    """
    w = dict(net.named_parameters())[name]
    outputs_by_jvp = connection_transpose_times(net, x, name, w.detach().flatten())
    return connection_times(net, x, name, laplacian(weights.to(outputs_by_jvp.dtype)) @ outputs_by_jvp)


def _layer_gradient(net: nn.Module, name: str, scalar: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(scalar, dict(net.named_parameters())[name])
    return grad.flatten()


def _worst_over_layers(net: nn.Module, per_layer: Callable[[str], Verdict]) -> Verdict:
    verdicts = {name: per_layer(name) for name in layer_names(net)}
    failed = [(name, v) for name, v in verdicts.items() if not v.ok]
    name, worst = failed[0] if failed else max(verdicts.items(), key=lambda kv: kv[1].measured)
    return Verdict(worst.ok, worst.measured, worst.tolerance, f"layer '{name}' (worst of {len(verdicts)}): "
                                                              f"{worst.message}")


def _inputs(net_adapter: NetAdapter, n: int, seed: int) -> torch.Tensor:
    dtype = next(net_adapter.net.parameters()).dtype
    return torch.randn(n, *net_adapter.input_shape, generator=make_generator(seed), dtype=torch.float64).to(dtype)


def _in_class(net_adapter: NetAdapter, seed: int) -> None:
    if not any(True for _ in net_adapter.net.parameters()):
        raise NotApplicable("the network has no parameters")
    check_theorem_class(net_adapter.net, _inputs(net_adapter, 2 * PAIRS_THEOREM1, seed + 4))


def _theorem_class(net_adapter: NetAdapter, seed: int) -> Verdict:
    _in_class(net_adapter, seed)
    return Verdict(True, None, None, f"in the theorems' class: no biases or normalisation, and the output is "
                                     f"positively homogeneous in each of {layer_names(net_adapter.net)} (THEORY.md §1)")


def _theorem1_pair(net_adapter: NetAdapter, seed: int) -> Verdict:
    _in_class(net_adapter, seed)
    net, p = net_adapter.net, PAIRS_THEOREM1
    x = _inputs(net_adapter, 2 * p, seed)
    pairs = torch.zeros(2 * p, 2 * p, dtype=torch.float64)
    pairs[torch.arange(p), p + torch.arange(p)] = 1.0
    pairs = pairs + pairs.T

    def per_layer(name: str) -> Verdict:
        z = net(x)
        actual = _layer_gradient(net, name, pair_distance(z[:p], z[p:]).sum())
        return _compare(actual, covariance_times(net, name, x, pairs), kind="gradient",
                        what=f"Theorem 1: sum over {p} pairs of dr/dw_l vs (K_1 - K_2)(K_1 - K_2)^T w_l")

    return _worst_over_layers(net, per_layer)


def _theorem3_operator(net_adapter: NetAdapter, seed: int) -> Verdict:
    _in_class(net_adapter, seed)
    net = net_adapter.net
    data = gaussian_augmented(3, 2, net_adapter.input_shape, THEOREM3_SIGMA, seed=seed,
                              dtype=next(net.parameters()).dtype)

    def per_layer(name: str) -> Verdict:
        split = residue(net, name, data, simple())   # theta = 0 for L_simp: the main term is the whole gradient
        return _compare(split.neg_gradient, split.main, kind="gradient",
                        what="Theorem 3: -dE[L_simp]/dw_l vs 2 OP_l w_l, OP_l = V[Kbar_l] (exact enumeration)")

    return _worst_over_layers(net, per_layer)


_NET_CHECKS = {"theorem_class": _theorem_class, "theorem1_pair": _theorem1_pair,
               "theorem3_operator": _theorem3_operator}


def check_network(subject: NetSubject, prop: str, seed: int) -> PropertyResult:
    """One network property (see NET_PROPERTIES) of ``subject`` at ``seed``."""
    if prop not in NET_PROPERTIES:
        raise BadInput(f"unknown network property {prop!r}; known: {NET_PROPERTIES}")
    return _run(prop, subject.name, seed, lambda: _NET_CHECKS[prop](subject.build(), seed), network=subject.name)


def _covariance_form(adapter: LossAdapter, net_adapter: NetAdapter, seed: int) -> Verdict:
    if adapter.normalises:
        raise NotApplicable(
            "the loss normalises its inputs, so it is a function of r = 1 - cos of z/||z||; z -> z/||z|| is not "
            "positively homogeneous of degree 1 and lies outside the theorems' network class, so dL/dw_l = "
            "1/2 sum_ij s_ij (K_i - K_j)(K_i - K_j)^T w_l does not apply. Checked instead, on the unit sphere: "
            "pair structure, balance, signs and the reference value and weights")
    _in_class(net_adapter, seed)
    net = net_adapter.net
    n_out = net(_inputs(net_adapter, 1, seed)).shape[-1]
    if adapter.dim is not None and adapter.dim != n_out:
        raise NotApplicable(f"the loss declares dim={adapter.dim} but the network has {n_out} outputs")
    layout = _fitting_layout(adapter, n_out, PROBE_SAMPLES[adapter.form])
    x = _inputs(net_adapter, layout.n_points, seed)
    z = net(x).detach().double()
    try:
        weights = recover_weights(adapter, Probe(layout, z @ z.T, n_out, seed)).pairs
    except torch.linalg.LinAlgError:
        raise NotApplicable(f"the network maps the {layout.n_points} probe inputs to linearly dependent outputs, "
                            "so the pair weights cannot be read off the Gram matrix") from None

    def per_layer(name: str) -> Verdict:
        actual = _layer_gradient(net, name, adapter.evaluate(net(x), layout).sum())
        return _compare(actual, covariance_times(net, name, x, weights), kind="gradient",
                        what="dL/dw_l (autograd) vs 1/2 sum_ij s_ij (K_i - K_j)(K_i - K_j)^T w_l with the recovered "
                             f"pair weights s (Theorems 1 and 3-4; {layout.n_points} points)")

    return _worst_over_layers(net, per_layer)


def check_covariance_form(loss: LossSubject, net: NetSubject, seed: int) -> PropertyResult:
    """Theorems 1 and 3-4 on a batch: the loss's layer gradient is the covariance form of its pair weights."""
    return _run(COVARIANCE_PROPERTY, loss.name, seed, lambda: _covariance_form(loss.build(), net.build(), seed),
                network=net.name)
