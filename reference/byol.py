"""BYOL and SimSiam: the implicit contrastive term of batch centring (docs/THEORY.md §9).

An online bias-free network ``f`` (encoder and projector, linear top) gives ``u_b = K_l(x_b)^T w_l``; a batch
normalisation step without affine parameters (``BatchNormStep``: centring ``u_b - mean_B u``, or variance-only
``u_b / std_B u``, or none) gives ``v_b``; a bias-free predictor ``h`` gives ``p_b = h(v_b)``. The target is
``t_b = stopgrad(norm(f_t(x'_b)))`` with separate weights ``f_t`` (BYOL, an EMA copy) or ``f_t = f`` (SimSiam).
The loss is ``(1/B) sum_b D(p_b, t_b)``, ``D = ||p - t||^2`` ("unnormalised") or ``||p/|p| - t/|t|||^2``
("normalised"), optionally symmetrised over the two views.

With ``g_b = dL/dv_b``, the gradient of a layer ``w_l`` of ``f`` splits exactly into

- (a) ``sum_b K_b g_b``: the positive-pair term, the batch statistics held fixed;
- (b) the term from differentiating through the batch statistics. Centring: ``-Kbar sum_c g_c`` with
  ``Kbar = (1/B) sum_b K_b``, so that (a) + (b) ``= sum_b (K_b - Kbar) g_b = 1/(2B) sum_bc (K_b - K_c)(g_b - g_c)``.
  Variance-only: ``-sum_b (K_b - Kbar) S (K_b - Kbar)^T w_l`` with ``S = diag(sum_c g_cj v_cj / (B sigma_j^2))``.

Autograd gives (a) and (b) by detaching the batch statistics, or everything but them (``BatchNormStep.route``);
the closed forms here use the Kronecker ``K_l`` of ``connection.connection_kron`` and the predictor's closed-form
Jacobian, never autograd.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from dualnet_ssl.compare import assert_identity, fail
from dualnet_ssl.connection import connection_kron, top_down_jacobians, _param
from dualnet_ssl.errors import BadInput
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.tolerances import tolerance

NORMALISATIONS = ("centre", "variance", "none")
LOSSES = ("unnormalised", "normalised")
STOP_GRADIENTS = ("target", "online")
ROUTES = ("both", "fixed_stats", "stats_only")


class BatchNormStep(nn.Module):
    """BatchNorm without affine parameters, split into its two steps: ``mode="centre"`` (``u - mean``),
    ``"variance"`` (``u / std``, the mean used only inside the std) or ``"none"``.

    Training mode uses the batch's statistics, eval mode running ones (updated in training, momentum 0.1).
    ``route`` selects what autograd sees: ``"both"``; ``"fixed_stats"`` (statistics detached: term (a));
    ``"stats_only"`` (only the statistics differentiated: term (b)).
    """

    def __init__(self, width: int, mode: str = "centre", momentum: float = 0.1):
        super().__init__()
        if mode not in NORMALISATIONS:
            raise BadInput(f"normalisation mode must be one of {NORMALISATIONS}, got {mode!r}")
        self.mode, self.momentum, self.route = mode, float(momentum), "both"
        self.register_buffer("running_mean", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("running_var", torch.ones(width, dtype=torch.float64))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        value = u.detach() if self.route == "stats_only" else u
        if self.mode == "none":
            return value
        if self.training:
            if u.shape[0] < 2:
                raise BadInput(f"batch {self.mode} needs at least 2 samples per batch, got {u.shape[0]}")
            source = u.detach() if self.route == "fixed_stats" else u
            mean = source.mean(0)
            var = ((source - mean) ** 2).mean(0)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach().to(self.running_mean))
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var.detach().to(self.running_var))
        else:
            mean, var = self.running_mean.to(u), self.running_var.to(u)
        return value - mean if self.mode == "centre" else value / var.sqrt()


class DualBranch(nn.Module):
    """One BYOL or SimSiam step's loss: online ``f`` -> ``BatchNormStep`` -> predictor ``h`` (or none) against
    ``stopgrad(BatchNormStep(f_t(x')))``. SimSiam: pass ``target=None`` (the online weights, shared)."""

    def __init__(self, online: BiasFreeMLP, predictor: BiasFreeMLP | None, target: BiasFreeMLP | None = None, *,
                 normalisation: str = "centre", loss: str = "unnormalised", symmetric: bool = False,
                 stop_gradient: str = "target"):
        super().__init__()
        if loss not in LOSSES:
            raise BadInput(f"loss must be one of {LOSSES}, got {loss!r}")
        if stop_gradient not in STOP_GRADIENTS:
            raise BadInput(f"stop_gradient must be one of {STOP_GRADIENTS}, got {stop_gradient!r}")
        width = online.widths[-1]
        if predictor is not None and (predictor.widths[0], predictor.widths[-1]) != (width, width):
            raise BadInput(f"the predictor must map the representation's width {width} to itself, got "
                           f"{predictor.widths}")
        if target is not None and target.widths != online.widths:
            raise BadInput(f"target widths {target.widths} differ from online widths {online.widths}")
        self.online, self.predictor, self.target = online, predictor, target
        self.norm = BatchNormStep(width, normalisation)
        self.target_norm = BatchNormStep(width, normalisation)
        self.normalisation, self.loss_kind, self.symmetric, self.stop_gradient = (
            normalisation, loss, bool(symmetric), stop_gradient)

    @property
    def target_net(self) -> BiasFreeMLP:
        return self.online if self.target is None else self.target

    def directions(self, x1: torch.Tensor, x2: torch.Tensor):
        """(online views, target views) per loss direction."""
        if x1.shape != x2.shape or x1.dim() != 2:
            raise BadInput(f"two views of shape (batch, {self.online.widths[0]}) expected, got {tuple(x1.shape)} "
                           f"and {tuple(x2.shape)}")
        return [(x1, x2), (x2, x1)] if self.symmetric else [(x1, x2)]

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """v = norm(f(x)): what the predictor reads."""
        return self.norm(self.online(x))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for xo, xt in self.directions(x1, x2):
            v = self.representation(xo)
            p = v if self.predictor is None else self.predictor(v)
            t = self.target_norm(self.target_net(xt))
            if self.stop_gradient == "target":
                t = t.detach()
            else:
                p = p.detach()
            total = total + pair_loss(p, t, self.loss_kind)
        return total

    @contextmanager
    def routed(self, route: str):
        """Autograd sees only part of the online normalisation step (``BatchNormStep.route``)."""
        if route not in ROUTES:
            raise BadInput(f"route must be one of {ROUTES}, got {route!r}")
        previous, self.norm.route = self.norm.route, route
        try:
            yield self
        finally:
            self.norm.route = previous


def pair_loss(p: torch.Tensor, t: torch.Tensor, kind: str) -> torch.Tensor:
    """(1/B) sum_b D(p_b, t_b): ||p - t||^2 or ||p/|p| - t/|t|||^2 (= 2 - 2 cos)."""
    if kind == "normalised":
        for name, rows in (("prediction", p), ("target", t)):
            zero = (rows.detach().norm(dim=1) == 0).nonzero().flatten().tolist()
            if zero:
                raise BadInput(f"the normalised loss is undefined: {name} rows {zero} are exactly zero (every unit "
                               f"feeding them is off for those samples); draw another batch or network")
        p, t = p / p.norm(dim=1, keepdim=True), t / t.norm(dim=1, keepdim=True)
    return ((p - t) ** 2).sum(1).mean()


def _loss_derivative(p: torch.Tensor, t: torch.Tensor, kind: str) -> torch.Tensor:
    """dL/dp_b in closed form: (2/B)(p - t), or -(2/B)(t^ - (p^.t^) p^)/|p| for the normalised loss."""
    batch = p.shape[0]
    if kind == "unnormalised":
        return 2.0 / batch * (p - t)
    norm = p.norm(dim=1, keepdim=True)
    p_hat, t_hat = p / norm, t / t.norm(dim=1, keepdim=True)
    return -2.0 / batch * (t_hat - (p_hat * t_hat).sum(1, keepdim=True) * p_hat) / norm


def predictor_jacobian(predictor: BiasFreeMLP | None, v: torch.Tensor) -> torch.Tensor:
    """dh/dv at each v_b in closed form, (B, n, n): J_1 W_1 of the predictor (identity without one)."""
    if predictor is None:
        return torch.eye(v.shape[1], dtype=v.dtype, device=v.device).expand(v.shape[0], -1, -1)
    return top_down_jacobians(predictor, v)[0] @ predictor.weights[0]


def _normalise_closed_form(u: torch.Tensor, mode: str):
    """(v, sigma) from u by the batch's statistics; sigma = 1 unless variance-only."""
    if mode == "none":
        return u, torch.ones_like(u[0])
    centred = u - u.mean(0)
    if mode == "centre":
        return centred, torch.ones_like(u[0])
    sigma = (centred ** 2).mean(0).sqrt()
    return u / sigma, sigma


@dataclass
class SplitTerms:
    """The two terms of -(-dL/dw_l), flat: (a) positive-pair, (b) through the batch statistics."""
    positive: torch.Tensor
    implicit: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.positive + self.implicit

    def implicit_share(self) -> float:
        """||(b)|| / (||(a)|| + ||(b)||), in [0, 1]."""
        a, b = float(self.positive.norm()), float(self.implicit.norm())
        return b / (a + b) if a + b > 0 else 0.0


def closed_form_terms(model: DualBranch, x1: torch.Tensor, x2: torch.Tensor, name: str, *,
                      with_predictor: bool = True, implicit_sign: float = 1.0) -> SplitTerms:
    """(a) and (b) for layer ``name`` of the online net from closed-form K_l (Kronecker), the predictor's
    closed-form Jacobian and the loss's closed-form derivative; no autograd. Outputs come from K_l^T w_l.

    ``with_predictor=False`` and ``implicit_sign=-1`` exist only to feed the checker a wrong derivation.
    """
    online, target = model.online, model.target_net
    layer = online.layer_names().index(_check_layer(online, name))
    w, w_target = online.weights[layer].detach().flatten(), target.weights[layer].detach().flatten()
    positive = torch.zeros_like(w)
    implicit = torch.zeros_like(w)
    with torch.no_grad():
        for xo, xt in model.directions(x1, x2):
            k = connection_kron(online, xo, layer)                                  # (B, P, n)
            v, sigma = _normalise_closed_form(torch.einsum("bpo,p->bo", k, w), model.normalisation)
            t, _ = _normalise_closed_form(torch.einsum("bpo,p->bo", connection_kron(target, xt, layer), w_target),
                                          model.normalisation)
            jac = predictor_jacobian(model.predictor if with_predictor else None, v)
            p = torch.einsum("bij,bj->bi", jac, v)                                 # homogeneity: h(v) = J v
            g = torch.einsum("bij,bi->bj", jac, _loss_derivative(p, t, model.loss_kind))    # dL/dv_b
            positive += torch.einsum("bpo,bo->p", k, g / sigma)
            if model.normalisation == "centre":
                implicit -= implicit_sign * k.mean(0) @ g.sum(0)
            elif model.normalisation == "variance":
                centred_k = k - k.mean(0)
                scale = (g * v).sum(0) / (v.shape[0] * sigma ** 2)                 # S's diagonal
                implicit -= implicit_sign * torch.einsum("bpo,o,bqo,q->p", centred_k, scale, centred_k, w)
    return SplitTerms(positive, implicit)


def covariance_form(model: DualBranch, x1: torch.Tensor, x2: torch.Tensor, name: str) -> torch.Tensor:
    """Centring: (a) + (b) = 1/(2B) sum_bc (K_b - K_c)(g_b - g_c), Theorem 1's pair form over the batch's pairs,
    built pair by pair from closed-form K and g; no autograd. Other normalisations: BadInput."""
    if model.normalisation != "centre":
        raise BadInput(f"the pair covariance form is the centring's; this model normalises by {model.normalisation!r}")
    online, target = model.online, model.target_net
    layer = online.layer_names().index(_check_layer(online, name))
    w, w_target = online.weights[layer].detach().flatten(), target.weights[layer].detach().flatten()
    total = torch.zeros_like(w)
    with torch.no_grad():
        for xo, xt in model.directions(x1, x2):
            k = connection_kron(online, xo, layer)
            v, _ = _normalise_closed_form(torch.einsum("bpo,p->bo", k, w), "centre")
            t, _ = _normalise_closed_form(torch.einsum("bpo,p->bo", connection_kron(target, xt, layer), w_target),
                                          "centre")
            jac = predictor_jacobian(model.predictor, v)
            g = torch.einsum("bij,bi->bj", jac, _loss_derivative(torch.einsum("bij,bj->bi", jac, v), t,
                                                                 model.loss_kind))
            batch = k.shape[0]
            for b in range(batch):
                for c in range(batch):
                    total += (k[b] - k[c]) @ (g[b] - g[c]) / (2 * batch)
    return total


def _check_layer(online: BiasFreeMLP, name: str) -> str:
    if name not in online.layer_names():
        raise BadInput(f"'{name}' is not a layer of the online network below the normalisation step; layers: "
                       f"{online.layer_names()} (predictor layers sit above it: they have no term (b))")
    return name


def autograd_terms(model: DualBranch, x1: torch.Tensor, x2: torch.Tensor, name: str) -> tuple[torch.Tensor, SplitTerms]:
    """(full gradient, SplitTerms) of layer ``name`` of the online net by autograd: (a) with the batch statistics
    detached, (b) with only the statistics differentiated. A layer that receives no gradient gets zeros."""
    w = _param(model.online, _check_layer(model.online, name))

    def grad(route: str) -> torch.Tensor:
        with model.routed(route):
            loss = model(x1, x2)
            (g,) = torch.autograd.grad(loss, w, allow_unused=True) if loss.requires_grad else (None,)
        return torch.zeros_like(w).flatten() if g is None else g.flatten()

    return grad("both"), SplitTerms(grad("fixed_stats"), grad("stats_only"))


def _zero_hint(model: DualBranch, auto: torch.Tensor, expected: torch.Tensor) -> str:
    if bool((auto == 0).all()) and bool((expected != 0).any()):
        if model.normalisation != "none" and not model.norm.training:
            return ("; autograd's term is exactly zero: the online normalisation step is in eval mode (running "
                    "statistics), so nothing is differentiated through the batch statistics")
        return "; autograd's term is exactly zero: nothing is differentiated through the batch statistics"
    return ""


def check_split(model: DualBranch, x1: torch.Tensor, x2: torch.Tensor, name: str, *, context: str = "",
                closed_form=closed_form_terms) -> SplitTerms:
    """docs/THEORY.md §9: autograd's gradient = (a) + (b) at layer ``name`` (autograd, two routings), and each
    term equals its closed form (Kronecker K_l, closed-form predictor Jacobian and loss derivative). Evidence:
    the closed forms share no code with autograd. Returns the autograd terms."""
    __tracebackhide__ = True
    kind = "SimSiam" if model.target is None else "BYOL"
    where = ", ".join(p for p in (f"Theorem 1 + batch {model.normalisation}, {kind}", f"layer {name}",
                                  f"{model.loss_kind} loss", "symmetric" if model.symmetric else "", context) if p)
    full, auto = autograd_terms(model, x1, x2, name)
    expected = closed_form(model, x1, x2, name)
    if bool((full == 0).all()) and bool((expected.total != 0).any()):
        fail("online gradient vs closed form", "no gradient reaches the online branch, while the closed form is not "
             "zero: is the stop-gradient on the online branch instead of the target?",
             limit=tolerance(full.dtype, "gradient"), figure=1.0, context=where)
    assert_identity(auto.total, full, kind="gradient", what="autograd gradient vs (a) + (b)", context=where)
    assert_identity(auto.implicit, expected.implicit, kind="gradient",
                    what="implicit term (b) (autograd through the batch statistics) vs closed form", context=where,
                    hint=_zero_hint(model, auto.implicit, expected.implicit))
    assert_identity(auto.positive, expected.positive, kind="gradient",
                    what="positive-pair term (a) (batch statistics fixed) vs closed form", context=where)
    return auto


def check_covariance_form(model: DualBranch, x1: torch.Tensor, x2: torch.Tensor, name: str, *,
                          context: str = "") -> float:
    """docs/THEORY.md §9: with centring, autograd's gradient = 1/(2B) sum_bc (K_b - K_c)(g_b - g_c)."""
    full, _ = autograd_terms(model, x1, x2, name)
    return assert_identity(full, covariance_form(model, x1, x2, name), kind="gradient",
                           what="gradient vs pair covariance form 1/(2B) sum (K_b - K_c)(g_b - g_c)",
                           context=f"§9 covariance form, layer {name}, {context}".rstrip(", "))


def check_implicit_term_vanishes(model: DualBranch, x1: torch.Tensor, x2: torch.Tensor, name: str, *,
                                 context: str = "") -> float:
    """docs/THEORY.md §9: autograd's term (b) is zero (no centring; or centring, a linear or no predictor, a centred
    target and the unnormalised loss, where sum_c g_c = 0). Held to the gradient tolerance against zeros."""
    _, auto = autograd_terms(model, x1, x2, name)
    return assert_identity(auto.implicit, torch.zeros_like(auto.implicit), kind="gradient",
                           what="implicit term (b) vs zero", context=f"§9, layer {name}, {context}".rstrip(", "))


def check_scale_invariance(model: DualBranch, x1: torch.Tensor, x2: torch.Tensor, *, context: str = "") -> float:
    """docs/THEORY.md §9, variance-only: the loss is invariant to each representation feature's scale, so at the top
    layer of the online net sum_i W[j, i] dL/dW[j, i] = 0 for every feature j (term (b) cancels what (a) has)."""
    name = model.online.layer_names()[-1]
    w = _param(model.online, name)
    (grad,) = torch.autograd.grad(model(x1, x2), w)
    per_feature = (w.detach() * grad).sum(1)
    scale = (w.detach().abs() * grad.abs()).sum(1)
    return assert_identity(per_feature / scale.clamp_min(torch.finfo(scale.dtype).tiny), torch.zeros_like(per_feature),
                           kind="gradient", what="per-feature scale derivative sum_i W_ji dL/dW_ji (relative) vs zero",
                           context=f"§9 variance-only normalisation, {context}".rstrip(", "))
