"""The theorems on a user's network, and the covariance form of a loss on it (docs/REGRESSION.md, "Your network")."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dualnet_ssl.connection import connection_times, connection_transpose_times
from dualnet_ssl.distributions import gaussian_augmented
from dualnet_ssl.errors import BadInput, NotApplicable
from dualnet_ssl.losses import pair_distance, simple
from dualnet_ssl.networks import check_theorem_class, layer_names
from dualnet_ssl.operators import laplacian, residue
from dualnet_ssl.regression.declarations import LossAdapter, NetAdapter
from dualnet_ssl.regression.loading import LossSubject, NetSubject
from dualnet_ssl.regression.probe import PROBE_SAMPLES, Probe, fitting_layout, recover_weights
from dualnet_ssl.regression.verdicts import Verdict, compare, run_check
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import make_generator


THEOREM3_SIGMA = 0.3
"""Augmentation spread of the Theorem 3 distribution (any sigma works: the identity is exact)."""


PAIRS_THEOREM1 = 3
"""Pairs summed in the Theorem 1 check."""


NET_PROPERTIES = ("theorem_class", "theorem1_pair", "theorem3_operator")


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
        return compare(actual, covariance_times(net, name, x, pairs), kind="gradient",
                        what=f"Theorem 1: sum over {p} pairs of dr/dw_l vs (K_1 - K_2)(K_1 - K_2)^T w_l")

    return _worst_over_layers(net, per_layer)


def _theorem3_operator(net_adapter: NetAdapter, seed: int) -> Verdict:
    _in_class(net_adapter, seed)
    net = net_adapter.net
    data = gaussian_augmented(3, 2, net_adapter.input_shape, THEOREM3_SIGMA, seed=seed,
                              dtype=next(net.parameters()).dtype)

    def per_layer(name: str) -> Verdict:
        split = residue(net, name, data, simple())   # theta = 0 for L_simp: the main term is the whole gradient
        return compare(split.neg_gradient, split.main, kind="gradient",
                        what="Theorem 3: -dE[L_simp]/dw_l vs 2 OP_l w_l, OP_l = V[Kbar_l] (exact enumeration)")

    return _worst_over_layers(net, per_layer)


_NET_CHECKS = {"theorem_class": _theorem_class, "theorem1_pair": _theorem1_pair,
               "theorem3_operator": _theorem3_operator}


def check_network(subject: NetSubject, prop: str, seed: int) -> CheckResult:
    """One network property (see NET_PROPERTIES) of ``subject`` at ``seed``."""
    if prop not in NET_PROPERTIES:
        raise BadInput(f"unknown network property {prop!r}; known: {NET_PROPERTIES}")
    return run_check(prop, subject.name, seed, lambda: _NET_CHECKS[prop](subject.build(), seed), network=subject.name)


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
    layout = fitting_layout(adapter, n_out, PROBE_SAMPLES[adapter.form])
    x = _inputs(net_adapter, layout.n_points, seed)
    z = net(x).detach().double()
    try:
        weights = recover_weights(adapter, Probe(layout, z @ z.T, n_out, seed)).pairs
    except torch.linalg.LinAlgError:
        raise NotApplicable(f"the network maps the {layout.n_points} probe inputs to linearly dependent outputs, "
                            "so the pair weights cannot be read off the Gram matrix") from None

    def per_layer(name: str) -> Verdict:
        actual = _layer_gradient(net, name, adapter.evaluate(net(x), layout).sum())
        return compare(actual, covariance_times(net, name, x, weights), kind="gradient",
                        what="dL/dw_l (autograd) vs 1/2 sum_ij s_ij (K_i - K_j)(K_i - K_j)^T w_l with the recovered "
                             f"pair weights s (Theorems 1 and 3-4; {layout.n_points} points)")

    return _worst_over_layers(net, per_layer)


def check_covariance_form(loss: LossSubject, net: NetSubject, seed: int) -> CheckResult:
    """Theorems 1 and 3-4 on a batch: the loss's layer gradient is the covariance form of its pair weights."""
    return run_check(COVARIANCE_PROPERTY, loss.name, seed, lambda: _covariance_form(loss.build(), net.build(), seed),
                network=net.name)
