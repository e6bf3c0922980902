"""The theorems on a user's network, and the covariance form of a loss on it (docs/REGRESSION.md, "Your network")."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from dualnet_ssl.connection import connection_times, connection_transpose_times
from dualnet_ssl.distributions import gaussian_augmented
from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.losses import pair_distance, simple
from dualnet_ssl.networks import check_theorem_class, layer_names
from dualnet_ssl.operators import laplacian, residue
from dualnet_ssl.regression.declarations import LossAdapter, NetAdapter
from dualnet_ssl.regression.loading import LossSubject, NetSubject
from dualnet_ssl.regression.engine import evaluate
from dualnet_ssl.regression.geometry import PROBE_SAMPLES, Probe, fitting_layout
from dualnet_ssl.regression.probe import recover_weights
from dualnet_ssl.regression.twin import TWIN_DESCRIPTION, bias_free_twin, class_distance, distance_summary
from dualnet_ssl.regression.verdicts import Verdict, compare, run_check
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import derive_seed, make_generator


THEOREM3_SIGMA = 0.3
"""Augmentation spread of the Theorem 3 distribution (any sigma works: the identity is exact)."""


PAIRS_THEOREM1 = 3
"""Pairs summed in the Theorem 1 check."""


COVARIANCE_PROPERTY = "covariance_form"


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


def _class_inputs(net_adapter: NetAdapter, seed: int) -> torch.Tensor:
    """The inputs on which membership of the theorems' class, and the distance from it, are measured."""
    return _inputs(net_adapter, 2 * PAIRS_THEOREM1, derive_seed(seed, "class inputs"))


def _in_class(net_adapter: NetAdapter, seed: int) -> None:
    if not any(True for _ in net_adapter.net.parameters()):
        raise NotApplicable("the network has no parameters")
    check_theorem_class(net_adapter.net, _class_inputs(net_adapter, seed))


def theorem_class(net_adapter: NetAdapter, seed: int) -> Verdict:
    try:
        _in_class(net_adapter, seed)
    except NotApplicable as err:
        distance = class_distance(net_adapter.net, _class_inputs(net_adapter, seed))
        raise NotApplicable(f"{err}. Distance from the class: {distance_summary(distance)}. The property "
                            f"bias_free_twin checks the theorems on {TWIN_DESCRIPTION}") from None
    return Verdict(True, None, None, f"in the theorems' class: no biases or normalisation, and the output is "
                                     f"positively homogeneous in each of {layer_names(net_adapter.net)} (docs/THEORY.md §1)")


def theorem1_pair(net_adapter: NetAdapter, seed: int) -> Verdict:
    _in_class(net_adapter, seed)
    net, p = net_adapter.net, PAIRS_THEOREM1
    x = _inputs(net_adapter, 2 * p, seed)
    pairs = torch.zeros(2 * p, 2 * p, dtype=torch.float64)
    pairs[torch.arange(p), p + torch.arange(p)] = 1.0
    pairs = pairs + pairs.T

    def per_layer(name: str) -> Verdict:
        z = net(x)
        actual = _layer_gradient(net, name, pair_distance(z[:p], z[p:]).sum())
        return compare(actual, covariance_times(net, name, x, pairs), kind="gradient",
                        what=f"Theorem 1: sum over {p} pairs of dr/dw_l vs (K_1 - K_2)(K_1 - K_2)^T w_l")

    return _worst_over_layers(net, per_layer)


def theorem3_operator(net_adapter: NetAdapter, seed: int) -> Verdict:
    _in_class(net_adapter, seed)
    net = net_adapter.net
    data = gaussian_augmented(3, 2, net_adapter.input_shape, THEOREM3_SIGMA, seed=seed,
                              dtype=next(net.parameters()).dtype)

    def per_layer(name: str) -> Verdict:
        split = residue(net, name, data, simple())   # theta = 0 for L_simp: the main term is the whole gradient
        return compare(split.neg_gradient, split.main, kind="gradient",
                        what="Theorem 3: -dE[L_simp]/dw_l vs 2 OP_l w_l, OP_l = V[Kbar_l] (exact enumeration)")

    return _worst_over_layers(net, per_layer)


def _twin(net_adapter: NetAdapter, seed: int) -> tuple[NetAdapter, str]:
    """The network, or its bias-free twin when the network is outside the class; and a note that says which."""
    try:
        _in_class(net_adapter, seed)
        return net_adapter, ""
    except NotApplicable as err:
        reason = str(err)
    twin = NetAdapter(bias_free_twin(net_adapter.net), net_adapter.input_shape, net_adapter.name)
    try:
        _in_class(twin, seed)
    except NotApplicable as err:
        raise NotApplicable(f"the network is outside the theorems' class ({reason}), and so is {TWIN_DESCRIPTION}: "
                            f"{err}") from None
    distance = class_distance(net_adapter.net, _class_inputs(net_adapter, seed))
    return twin, (f"checked on {TWIN_DESCRIPTION}, since the network is outside the class ({reason}); the real "
                  f"network: {distance_summary(distance)}. ")


def twin_theorems(net_adapter: NetAdapter, seed: int) -> Verdict:
    twin, note = _twin(net_adapter, seed)
    if not note:
        raise NotApplicable("the network is in the theorems' class itself, so theorem1_pair and theorem3_operator "
                            "checked it directly; no twin is needed")
    verdicts = [theorem1_pair(twin, seed), theorem3_operator(twin, seed)]
    worst = next((v for v in verdicts if not v.ok), max(verdicts, key=lambda v: v.measured))
    return Verdict(worst.ok, worst.measured, worst.tolerance, note + worst.message)


MOMENTUM_OFFSET = 0.1
"""Under a stop-gradient the detached points come from a second network W' = W + MOMENTUM_OFFSET * noise, as
from a momentum encoder: the two-network form of docs/THEORY.md §3 is then checked with W' != W."""


def _momentum_twin(net: nn.Module, seed: int) -> nn.Module:
    twin = copy.deepcopy(net)
    g = make_generator(derive_seed(seed, "momentum twin"))
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(MOMENTUM_OFFSET * p.abs().mean() * torch.randn(p.shape, generator=g, dtype=torch.float64
                                                                  ).to(p.dtype))
    return twin


def _covariance_form(adapter: LossAdapter, net_adapter: NetAdapter, seed: int) -> Verdict:
    if adapter.on_unit_rows:
        raise NotApplicable(
            "the loss sees unit rows (it normalises, or its caller does: unit_inputs), so it is a function of "
            "r = 1 - cos of z/||z||; z -> z/||z|| is not positively homogeneous of degree 1 and lies outside the "
            "theorems' network class, so dL/dw_l = 1/2 sum_ij s_ij (K_i - K_j)(K_i - K_j)^T w_l does not apply. "
            "Checked instead, on the unit sphere: pair structure, balance, signs and the reference value and weights")
    net_adapter, note = _twin(net_adapter, seed)
    net = net_adapter.net
    n_out = net(_inputs(net_adapter, 1, seed)).shape[-1]
    if adapter.dim is not None and adapter.dim != n_out:
        raise NotApplicable(f"the loss declares dim={adapter.dim} but the network has {n_out} outputs")
    layout = fitting_layout(adapter, n_out, PROBE_SAMPLES[adapter.form])
    x, live = _inputs(net_adapter, layout.n_points, seed), layout.live
    keys = _momentum_twin(net, seed) if layout.routed else net     # detached points: a second network

    def outputs() -> torch.Tensor:
        z = net(x)
        return torch.where(live[:, None], z, keys(x).detach()) if layout.routed else z

    z = outputs().detach().double()
    try:
        flow = recover_weights(adapter, Probe(layout, z @ z.T, n_out, seed)).flow
    except torch.linalg.LinAlgError:
        raise NotApplicable(f"the network maps the {layout.n_points} probe inputs to linearly dependent outputs, "
                            "so the pair weights cannot be read off the Gram matrix") from None
    two = " (two-network form: gradient into the live points only, docs/THEORY.md §3, §5a)" if layout.routed else ""

    def per_layer(name: str) -> Verdict:
        actual = _layer_gradient(net, name, evaluate(adapter, outputs(), layout).sum())
        w = dict(net.named_parameters())[name].detach().flatten()
        w_keys = dict(keys.named_parameters())[name].detach().flatten()
        by_jvp = torch.where(live[:, None], connection_transpose_times(net, x, name, w),
                             connection_transpose_times(keys, x, name, w_keys))     # K_l(x_i; W_i)^T w_i
        cotangent = (torch.diag(flow.sum(1)) - flow).to(by_jvp.dtype) @ by_jvp       # sum_j s_ij (z_i - z_j)
        expected = connection_times(net, x[live], name, cotangent[live])
        return compare(actual, expected, kind="gradient",
                       what="dL/dw_l (autograd) vs sum_i K_l(x_i) sum_j s_ij (K_l(x_i)^T w_l - K_l(x_j)^T w_l) with "
                            f"the recovered pair weights s (Theorems 1 and 3-4{two}; {layout.n_points} points)")

    v = _worst_over_layers(net, per_layer)
    return Verdict(v.ok, v.measured, v.tolerance, note + v.message)


def check_covariance_form(loss: LossSubject, net: NetSubject, seed: int) -> CheckResult:
    """Theorems 1 and 3-4 on a batch: the loss's layer gradient is the covariance form of its pair weights."""
    return run_check(COVARIANCE_PROPERTY, loss.name, seed, lambda: _covariance_form(loss.build(), net.build(), seed),
                network=net.name)
