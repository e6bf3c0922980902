"""Per-theorem checks: analytic quantity vs. autograd, raising ``IdentityViolation`` with a full message.

Pytest-free, so the checkers in ``theorems/`` stay a few lines and ``tests/`` can feed them wrong
quantities. Each docstring says which assertions are evidence for the theorem and which hold by
construction (kept as sanity assertions, not evidence). Every check takes a ``context`` line (seed, architecture,
reproduce command; a ``compare.Context`` also carries them as fields) that goes into its failure message and
record. A check fails through ``compare.fail`` (an ``IdentityViolation`` whose ``result`` is a ``CheckResult``) and
returns a passing ``CheckResult`` (extra figures in ``details``); ``assert_*`` helpers return their figure.
Networks are screened with ``check_theorem_class`` first unless ``screen=False``: outside the theorems' class the
answer is ``NotApplicable``, never a false failure.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev

from dualnet_ssl.compare import Context, assert_identity, fail, identity_passed, passed
from dualnet_ssl.connection import connection_dense, connection_transpose_times, _param
from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import PairLoss, autograd_weights, pair_distance, simple
from dualnet_ssl.networks import BiasFreeMLP, check_theorem_class
from dualnet_ssl.operators import (expected_loss_neg_gradient, operator_dense, operator_from_definition, operator_times,
                                   residue, numerical_rank, symmetric_eigenvalues)
from dualnet_ssl.results import CheckResult
from dualnet_ssl.thresholds import (EXACT_PAIR_MASS_SIGN, EXACT_RANK_EXCESS, EXACT_SIGN, EXACT_STRICT_RISE, Threshold,
                                    as_threshold)
from dualnet_ssl.tolerances import tolerance

Connection = Callable[[nn.Module, torch.Tensor, str], torch.Tensor]


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x): the exponent p of y ~ x^p."""
    logs = torch.log(torch.tensor(xs, dtype=torch.float64))
    design = torch.stack([logs, torch.ones_like(logs)], 1)
    return float(torch.linalg.lstsq(design, torch.log(torch.tensor(ys, dtype=torch.float64))[:, None]).solution[0, 0])


def _where(theorem: str, name: str, context: str, extra: str = "") -> Context:
    """The context line ``theorem, layer name, extra, context``, placed at the layer (seed and reproduce kept)."""
    return Context.of(context).within(theorem, f"layer {name}", extra, where=f"layer {name}")


# ---------------------------------------------------------------- Theorem 1 (docs/THEORY.md §2-3)

def check_homogeneity(net: nn.Module, x: torch.Tensor, name: str, *, connection: Connection = connection_dense,
                      context: str = "", screen: bool = True) -> CheckResult:
    """f_L(x) = K_l(x)^T w_l (dense K), and the same through one Jacobian-vector product (Theorem 1).

    Evidence where ``connection_dense`` is closed form (MLP: Kronecker; conv: im2col); for other networks the
    dense K is autograd's Jacobian, and this tests only that f_L is homogeneous of degree 1 in W_l (Euler).
    """
    if screen:
        check_theorem_class(net, x)
    w = _param(net, name).detach().flatten()
    out = net(x).detach()
    where = _where("homogeneity f_L = K_l^T w_l", name, context)
    dense = torch.einsum("bpo,p->bo", connection(net, x, name).detach(), w)
    dense_error = assert_identity(dense, out, what="K_l^T w_l (dense K) vs f_L", context=where)
    rel = assert_identity(connection_transpose_times(net, x, name, w), out, what="K_l^T w_l (JVP) vs f_L",
                          context=where)
    return identity_passed("homogeneity f_L = K_l^T w_l", rel, out.dtype, "exact", where,
                            dense_relative_error=dense_error)


def _autograd_distance_gradient(nets, x1, x2, name) -> torch.Tensor:
    """Per pair b: d r(x1_b, x2_b) / d w_l of the first net, autograd; (B, P). The second net may be the first."""
    w = _param(nets[0], name)
    grads = []
    for b in range(x1.shape[0]):
        r = pair_distance(nets[0](x1[b:b + 1]), nets[1](x2[b:b + 1])).sum()
        grads.append(torch.autograd.grad(r, w)[0].flatten())
    return torch.stack(grads)


def check_gradient_shared(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor, name: str, *,
                          connection: Connection = connection_dense, context: str = "",
                          screen: bool = True) -> CheckResult:
    """Theorem 1, shared weights, gradient through both branches: dr/dw = (K1 - K2)(K1 - K2)^T w.

    Evidence: autograd's gradient against the closed-form K (MLP, conv); autograd against autograd otherwise.
    """
    if screen:
        check_theorem_class(net, torch.cat([x1, x2]))
    w = _param(net, name).detach().flatten()
    diff = (connection(net, x1, name) - connection(net, x2, name)).detach()          # (B, P, n_L)
    analytic = torch.einsum("bpo,bqo,q->bp", diff, diff, w)
    where = _where("Theorem 1, shared weights", name, context)
    rel = assert_identity(_autograd_distance_gradient((net, net), x1, x2, name), analytic, kind="gradient",
                          what="dr/dw_l (autograd) vs (K1-K2)(K1-K2)^T w_l", context=where)
    return identity_passed("Theorem 1, shared weights", rel, analytic.dtype, "gradient", where)


def check_gradient_two_networks(net1: nn.Module, net2: nn.Module, x1: torch.Tensor, x2: torch.Tensor, name: str, *,
                                connection: Connection = connection_dense, context: str = "",
                                screen: bool = True) -> CheckResult:
    """Theorem 1, two networks (or stop-gradient on branch 2): dr/dw1 = K1 (K1^T w1 - K2^T w2)."""
    if screen:
        check_theorem_class(net1, x1)
        check_theorem_class(net2, x2)
    w1 = _param(net1, name).detach().flatten()
    w2 = _param(net2, name).detach().flatten()
    k1, k2 = connection(net1, x1, name).detach(), connection(net2, x2, name).detach()
    analytic = torch.einsum("bpo,bo->bp", k1, torch.einsum("bpo,p->bo", k1, w1) - torch.einsum("bpo,p->bo", k2, w2))
    where = _where("Theorem 1, two networks", name, context)
    rel = assert_identity(_autograd_distance_gradient((net1, net2), x1, x2, name), analytic, kind="gradient",
                          what="dr/dw1_l (autograd) vs K1 (K1^T w1 - K2^T w2)", context=where)
    return identity_passed("Theorem 1, two networks", rel, analytic.dtype, "gradient", where)


# ---------------------------------------------------------------- Theorem 2 (docs/THEORY.md §5)

def check_balance(loss: Callable, r_pos: torch.Tensor, r_neg: torch.Tensor, *, context: str = "") -> CheckResult:
    """Theorem 2: dL/dr_+ > 0, every dL/dr_k- < 0, and dL/dr_+ + sum_k dL/dr_k- = 0 (autograd);
    closed-form weights (docs/THEORY.md §5) match autograd when the loss provides them."""
    __tracebackhide__ = True
    where = Context.of(context).within(f"Theorem 2, loss {loss}")
    beta, beta_neg = autograd_weights(loss, r_pos, r_neg)
    if not bool((beta > 0).all()):
        i = int(torch.argmin(beta))
        fail("dL/dr_+ must be > 0", f"found {float(beta.flatten()[i]):.3e} at tuple {i} (r_+="
             f"{float(r_pos.flatten()[i]):.4g}); {int((beta <= 0).sum())} tuples violate", limit=EXACT_SIGN,
             allowed="> 0", figure=float(beta.flatten()[i]), context=where, where=f"tuple {i}")
    if not bool((beta_neg > 0).all()):
        i = int(torch.argmin(beta_neg))
        fail("dL/dr_k- must be < 0", f"found {-float(beta_neg.flatten()[i]):.3e}; {int((beta_neg <= 0).sum())} "
             f"entries violate", limit=EXACT_SIGN, allowed="< 0", figure=-float(beta_neg.flatten()[i]), context=where,
             where=f"entry {tuple(int(k) for k in torch.unravel_index(torch.argmin(beta_neg), beta_neg.shape))}")
    rel = assert_identity(beta_neg.sum(-1), beta, kind="gradient", context=where,
                          what="balance: sum_k (-dL/dr_k-) vs dL/dr_+ (must sum to zero)")
    details = {"min_beta": float(beta.min()), "min_beta_negative": float(beta_neg.min())}
    if isinstance(loss, PairLoss) and loss.weights_fn is not None:
        closed_pos, closed_neg = loss.weights(r_pos, r_neg)
        details["closed_form_error_positive"] = assert_identity(beta, closed_pos, kind="gradient", context=where,
                                                                what="dL/dr_+ vs closed form beta")
        details["closed_form_error_negative"] = assert_identity(beta_neg, closed_neg, kind="gradient", context=where,
                                                                what="-dL/dr_k- vs closed form beta_k")
    return identity_passed("Theorem 2 balance", rel, beta.dtype, "gradient", where, **details)


# ---------------------------------------------------------------- Theorem 3 (docs/THEORY.md §6)

def check_simp_covariance(net: nn.Module, name: str, data: DiscreteAugmentedData, *, factor: float = 2.0,
                          n_negatives: int = 1, exclude_self: bool = False,
                          operator: Callable = operator_times, context: str = "", screen: bool = True) -> CheckResult:
    """-dE[L_simp]/dw_l = factor * c * V[Kbar_l] w_l, exactly; c = N/(N-1) when self-negatives are excluded.

    Evidence: autograd through the exact enumeration against the structured operator (docs/THEORY.md §6). Feed it
    random, non-uniform probabilities (``random_probabilities``): with uniform ones a weighting error cancels.
    """
    if screen:
        check_theorem_class(net, data.flat_views())
    n = data.n_samples
    if exclude_self and not torch.allclose(data.sample_probs, torch.full_like(data.sample_probs, 1.0 / n)):
        raise BadInput("the N/(N-1) factor for excluded self-negatives holds for uniform sample probabilities")
    neg_grad, _ = expected_loss_neg_gradient(net, name, data, simple(), n_negatives, exclude_self)
    constant = factor * (n / (n - 1) if exclude_self else 1.0)
    where = _where("Theorem 3", name, context, f"H={n_negatives}, exclude_self={exclude_self}")
    rel = assert_identity(neg_grad, constant * operator(net, name, data), kind="gradient",
                          what=f"-dE[L_simp]/dw_l (autograd) vs {constant:.10g} V[Kbar_l] w_l", context=where)
    return identity_passed("Theorem 3 covariance operator", rel, neg_grad.dtype, "gradient", where, constant=constant)


def assert_psd(matrix: torch.Tensor, *, what: str, context: str = "") -> torch.Tensor:
    """Raise ``IdentityViolation`` unless the symmetric ``matrix`` is PSD: its smallest eigenvalue must be at least
    -(atol + rtol * largest |eigenvalue|), the table's "eigenvalue" tolerance; return the eigenvalues, ascending."""
    __tracebackhide__ = True
    eig = symmetric_eigenvalues(matrix.detach())
    tol = tolerance(matrix.dtype, "eigenvalue")
    floor = -(tol.atol + tol.rtol * float(eig.abs().max()))
    if float(eig.min()) < floor:
        message = f"smallest eigenvalue {float(eig.min()):.3e} < {floor:.3e} (largest {float(eig.max()):.3e})"
        fail(f"{what} is PSD", message, limit=tol, figure=float(eig.min()), context=context,
             text=f"{what} is not PSD" + (f" [{context}]" if context else "") + f": {message}")
    return eig


def _probe_vector(size: int, dtype, device) -> torch.Tensor:
    """A fixed vector that is not w_l, so the Jacobian-vector path of ``operator_times`` is checked too."""
    return torch.cos(1.3 * torch.arange(size, dtype=dtype, device=device) + 0.4)


def check_operator_structure(net: nn.Module, name: str, data: DiscreteAugmentedData,
                             pair_mass: torch.Tensor | None = None, *, definition: Callable = operator_from_definition,
                             context: str = "") -> CheckResult:
    """OP_l built from its definition (closed-form K, no Laplacian; docs/THEORY.md §6-7) has rank <= (N-1) n_L, and
    the structured product ``operator_times`` (OP w and OP u) and the Laplacian twin ``operator_dense`` equal it.

    Evidence: the rank bound (the definition's N terms span (N-1) n_L directions only because they are centred
    correctly: a wrong weighting or centring fails it) and structured/Laplacian == definition.
    Sanity only (true by construction of a sum of outer products with non-negative mass): symmetry, PSD.
    """
    __tracebackhide__ = True
    where = _where("covariance operator structure", name, context)
    op = definition(net, name, data, pair_mass).detach()
    assert_identity(op.T, op, what="OP_l^T vs OP_l (symmetry, a sanity check)", context=where)
    eig = assert_psd(op, what="OP_l (from its definition)", context=where)
    rank, bound = numerical_rank(eig), (data.n_samples - 1) * net(data.flat_views()[:1]).shape[1]
    if rank > bound:
        fail("rank(OP_l) <= (N-1) n_L", f"rank {rank}", limit=EXACT_RANK_EXCESS, allowed=f"rank <= {bound}",
             figure=rank, context=where, text=f"rank(OP_l) = {rank} exceeds (N-1) n_L = {bound} [{where}]")
    w = _param(net, name).detach().flatten()
    u = _probe_vector(w.numel(), w.dtype, w.device)
    assert_identity(operator_times(net, name, data, pair_mass).detach(), op @ w, context=where,
                    what="structured OP_l w vs OP_l w from the definition")
    assert_identity(operator_times(net, name, data, pair_mass, vector=u).detach(), op @ u, context=where,
                    what="structured OP_l u vs OP_l u from the definition")
    rel = assert_identity(operator_dense(net, name, data, pair_mass).detach(), op, context=where,
                          what="Laplacian form of OP_l vs its definition")
    return identity_passed("covariance operator structure", rel, op.dtype, "exact", where, rank=rank,
                            rank_bound=bound, min_eigenvalue=float(eig.min()), max_eigenvalue=float(eig.max()))


class FrozenGatingMLP(nn.Module):
    """A BiasFreeMLP whose gating D_l is frozen at its values on fixed inputs: K_l no longer depends on W
    (docs/THEORY.md §6: gradient descent on E[L_simp] is then the power iteration w <- (I + 2 alpha OP) w)."""

    def __init__(self, mlp: BiasFreeMLP, inputs: torch.Tensor):
        super().__init__()
        self.mlp = mlp
        self.inputs = inputs
        self.frozen = mlp.gates(inputs)

    def layer_names(self) -> list[str]:
        return [f"mlp.{n}" for n in self.mlp.layer_names()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == self.inputs.shape[0] and torch.equal(x, self.inputs):
            return self.mlp(x, self.frozen)
        matches = [int(torch.nonzero((self.inputs == row).all(dim=-1))[0]) for row in x]   # a subset of the inputs
        return self.mlp(x, [g[matches] for g in self.frozen])


def check_frozen_gating_power_iteration(net: BiasFreeMLP, name: str, data: DiscreteAugmentedData, *, alpha: float,
                                        steps: int, factor: float = 2.0, context: str = "") -> CheckResult:
    """With gating frozen, ``steps`` gradient steps on E[L_simp] equal (I + factor alpha OP)^steps w_0 (factor 2).

    Evidence: the autograd iterates against the power iteration with OP from its definition (closed-form K at
    the frozen gates). Sanity only: the alignment of (I + 2 alpha OP)^t w_0 with OP's top eigenvector grows every
    step, which holds for any PSD OP.
    """
    __tracebackhide__ = True
    frozen = FrozenGatingMLP(net, data.flat_views())
    fname = f"mlp.{name}"
    weight = _param(frozen, fname)
    op = operator_from_definition(net, name, data).detach()     # K at w_0 has the frozen gates
    top = torch.linalg.eigh(op).eigenvectors[:, -1]
    expected = weight.detach().flatten().clone()
    alignment = [float((top @ expected).abs() / expected.norm())]
    step_matrix = torch.eye(op.shape[0], dtype=op.dtype, device=op.device) + factor * alpha * op
    where = _where("Theorem 3, frozen gating", name, context, f"alpha={alpha:g}")
    original = weight.detach().clone()
    try:
        for t in range(steps):
            neg_grad, _ = expected_loss_neg_gradient(frozen, fname, data, simple())
            with torch.no_grad():
                weight += alpha * neg_grad.reshape(weight.shape)
            expected = step_matrix @ expected
            assert_identity(weight.detach().flatten(), expected, kind="gradient", context=where,
                            what=f"w after {t + 1} gradient steps vs (I + {factor:g} alpha OP)^{t + 1} w_0")
            alignment.append(float((top @ expected).abs() / expected.norm()))
    finally:
        with torch.no_grad():
            weight.copy_(original)
    if not all(b > a for a, b in zip(alignment, alignment[1:])):
        fail("alignment with OP's top eigenvector grows every step", f"did not grow every step: {alignment}",
             limit=EXACT_STRICT_RISE, allowed="each step's increase > 0", context=where,
             figure=min(b - a for a, b in zip(alignment, alignment[1:])), details={"alignment": alignment},
             text=f"alignment with OP's top eigenvector did not grow every step [{where}]: {alignment}")
    return passed("Theorem 3, frozen gating power iteration", limit=tolerance(op.dtype, "gradient"), context=where,
                  details={"alignment": alignment})


# ---------------------------------------------------------------- Theorem 4 (docs/THEORY.md §7)

def check_residue_zero(net: nn.Module, name: str, data: DiscreteAugmentedData, loss: Callable, *,
                       n_negatives: int = 1, context: str = "", screen: bool = True) -> CheckResult:
    """theta_l = 0: -dE[L]/dw_l = 2 OP_l w_l exactly (L_simp at any augmentation; any loss at zero augmentation).

    Evidence for L_simp at sigma > 0 and for H > 1 (the pair mass must sum the H negatives). Sanity only at
    sigma = 0: there the identity holds for any tuple probabilities, since the pair mass comes from the same ones.
    """
    if screen:
        check_theorem_class(net, data.flat_views())
    split = residue(net, name, data, loss, n_negatives)
    where = _where(f"Theorem 4, loss {loss}", name, context, f"H={n_negatives}")
    rel = assert_identity(split.neg_gradient, split.main, kind="gradient",
                          what="-dE[L]/dw_l (autograd) vs 2 OP_l w_l (theta must be 0)", context=where)
    return identity_passed("Theorem 4, theta = 0", rel, split.main.dtype, "gradient", where)


def check_main_term(net: nn.Module, name: str, data: DiscreteAugmentedData, loss: Callable, *,
                    n_negatives: int = 1, context: str = "") -> CheckResult:
    """Theorem 4's main term: pair mass >= 0, and ``check_operator_structure`` on OP_l weighted by the loss's pair
    mass."""
    __tracebackhide__ = True
    split = residue(net, name, data, loss, n_negatives)
    where = _where(f"Theorem 4 main term, loss {loss}", name, context, f"H={n_negatives}")
    if not bool((split.pair_mass >= 0).all()):
        lowest = float(split.pair_mass.min())
        fail("pair mass >= 0", f"min {lowest:.3e}", limit=EXACT_PAIR_MASS_SIGN, allowed=">= 0", figure=lowest,
             context=where, text=f"pair mass has negative entries (min {lowest:.3e}) [{where}]")
    return check_operator_structure(net, name, data, split.pair_mass, context=where)


def check_residue_falls_with_augmentation(sweep: dict, min_exponent: Threshold | float, *,
                                          context: str = "") -> CheckResult:
    """||theta_l|| rises strictly with sigma and falls at least like sigma^min_exponent as sigma falls (fitted
    exponent of ||theta|| ~ sigma^p). The ratio to the main term is reported, not asserted: it need not be monotone
    where ||2 OP w|| itself nearly vanishes (docs/THEORY.md §7)."""
    __tracebackhide__ = True
    norms, bound = sweep["theta_norms"], as_threshold(min_exponent)
    where = Context.of(context).within("Theorem 4 residue vs augmentation strength",
                                        f"sigmas={sweep['sigmas']}", where=f"sigmas={sweep['sigmas']}")
    _rises_strictly("||theta||", norms, where)
    if not sweep["theta_exponent"] >= bound.value:
        fail("||theta|| ~ sigma^p with p above its bound", f"fitted exponent {sweep['theta_exponent']:.2f}",
             limit=bound, allowed=f">= {bound.value:g}", figure=sweep["theta_exponent"], context=where,
             text=f"fitted exponent {sweep['theta_exponent']:.2f} of ||theta|| ~ sigma^p is below the measured lower "
                  f"bound {bound.value:g} [{where}]")
    return passed("Theorem 4 residue falls with augmentation", limit=bound, allowed=f">= {bound.value:g}",
                  figure=sweep["theta_exponent"], context=where, details={"theta_norms": norms})


def _rises_strictly(name: str, series: list[float], where: Context) -> None:
    """Fail unless ``series`` (over increasing sigma) rises strictly: it must fall as sigma falls."""
    __tracebackhide__ = True
    if not all(a < b for a, b in zip(series, series[1:])):
        fail(f"{name} rises strictly with sigma", f"does not fall as sigma falls: {series}", limit=EXACT_STRICT_RISE,
             allowed="each step's increase > 0", figure=min(b - a for a, b in zip(series, series[1:])),
             context=where, text=f"{name} does not fall as sigma falls: {series} [{where}]")


def check_residue_ratio_falls(sweep: dict, exponent_range: tuple[Threshold | float, Threshold | float], *,
                              context: str = "") -> CheckResult:
    """||theta||/||2 OP w|| rises strictly with sigma, with a fitted exponent inside ``exponent_range``.

    Only where the main term stays away from 0 (the digits study); see ``check_residue_falls_with_augmentation``."""
    __tracebackhide__ = True
    ratios = sweep["ratios"]
    where = Context.of(context).within("Theorem 4 residue vs augmentation strength",
                                        f"sigmas={sweep['sigmas']}", where=f"sigmas={sweep['sigmas']}")
    _rises_strictly("||theta||/||2 OP w||", ratios, where)
    low, high = (as_threshold(t) for t in exponent_range)
    allowed = f"[{low.value:g}, {high.value:g}]"
    if not low.value <= sweep["exponent"] <= high.value:
        fail("||theta||/||2 OP w|| ~ sigma^p with p in its range", f"fitted exponent {sweep['exponent']:.2f}",
             limit=low if sweep["exponent"] < low.value else high, allowed=allowed, figure=sweep["exponent"],
             context=where, text=f"fitted exponent {sweep['exponent']:.2f} of ||theta||/||2 OP w|| ~ sigma^p is "
                                 f"outside the measured range [{low.value}, {high.value}] [{where}]")
    return passed("Theorem 4 residue ratio falls with augmentation", limit=low, allowed=allowed,
                  figure=sweep["exponent"], context=where, details={"ratios": ratios})


def residue_ratio_sweep(net: nn.Module, name: str, make_data: Callable[[float], DiscreteAugmentedData],
                        loss: Callable, sigmas, *, n_negatives: int = 1) -> dict:
    """At each augmentation strength sigma: ||theta|| and ||theta|| / ||2 OP w||; the fitted exponents p of the
    ratio ~ sigma^p (``exponent``) and of ||theta|| (``theta_exponent``)."""
    splits = [residue(net, name, make_data(s), loss, n_negatives) for s in sigmas]
    norms, ratios = [float(r.theta.norm()) for r in splits], [r.ratio() for r in splits]
    return {"sigmas": list(sigmas), "theta_norms": norms, "ratios": ratios,
            "exponent": loglog_slope(list(sigmas), ratios), "theta_exponent": loglog_slope(list(sigmas), norms)}
