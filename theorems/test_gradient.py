"""Theorem 1 (docs/THEORY.md §2-3): the gradient of the squared distance is a connection-operator product.

With r(x1, x2) = 1/2 ||f_L(x1) - f_L(x2)||^2 and K_l(x) = J_l(x)^T kron f_{l-1}(x) (row-major w_l):

- shared weights, gradient through both branches:  dr/dw_l = [K_l(x1) - K_l(x2)][K_l(x1) - K_l(x2)]^T w_l;
- two networks W1, W2, gradient into branch 1:      dr/dw1_l = K_l(x1; W1)[K_l(x1; W1)^T w1_l - K_l(x2; W2)^T w2_l];
- homogeneity:                                       f_L(x) = K_l(x)^T w_l.

Checked at every layer, in float64, on bias-free MLPs (depth 1-6, widths 1-64, ReLU or leaky ReLU
with a random slope; K from the closed-form Kronecker product, independent of autograd) and on a
conv + ReLU + max-pool + linear-head network (K in closed form from im2col patches and a hand-written
backward pass, independent of autograd). These are the evidence. On the HLTM's tree network K comes from
autograd's Jacobian, so there the checks test only homogeneity (Euler), not the Kronecker structure.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dualnet_ssl.checks import check_gradient_shared, check_gradient_two_networks, check_homogeneity
from dualnet_ssl.connection import connection_dense
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP, TreeMirrorNet
from dualnet_ssl.seeding import derive_seed, make_generator
from theorems.strategies import mlp_widths, relu_or_leaky, seeds


def _inputs(seed, batch, shape, device):
    g = make_generator(seed)
    return [torch.randn(batch, *shape, generator=g, dtype=torch.float64).to(device) for _ in range(2)]


@given(widths=mlp_widths(), slope=relu_or_leaky, seed=seeds)
def test_gradient_shared_weights_mlp(widths, slope, seed, device, repro):
    net = BiasFreeMLP(widths, seed=seed, negative_slope=slope, device=device)
    x1, x2 = _inputs(derive_seed(seed, "inputs"), 3, (widths[0],), device)
    for name in net.layer_names():
        check_gradient_shared(net, x1, x2, name, context=repro(widths=widths, slope=slope, seed=seed))


@given(widths=mlp_widths(), slope=relu_or_leaky, seed=seeds)
def test_gradient_two_networks_mlp(widths, slope, seed, device, repro):
    net1 = BiasFreeMLP(widths, seed=seed, negative_slope=slope, device=device)
    net2 = BiasFreeMLP(widths, seed=derive_seed(seed, "second net"), negative_slope=slope, device=device)
    x1, x2 = _inputs(derive_seed(seed, "inputs"), 3, (widths[0],), device)
    for name in net1.layer_names():
        check_gradient_two_networks(net1, net2, x1, x2, name, context=repro(widths=widths, slope=slope, seed=seed))


@given(widths=mlp_widths(), slope=relu_or_leaky, seed=seeds)
def test_gradient_homogeneity_mlp(widths, slope, seed, device, repro):
    net = BiasFreeMLP(widths, seed=seed, negative_slope=slope, device=device)
    x, _ = _inputs(derive_seed(seed, "inputs"), 4, (widths[0],), device)
    for name in net.layer_names():
        check_homogeneity(net, x, name, context=repro(widths=widths, slope=slope, seed=seed))


@given(channels=st.lists(st.integers(1, 4), min_size=1, max_size=2),
       n_out=st.integers(1, 4), slope=relu_or_leaky, seed=seeds)
def test_gradient_conv_maxpool(channels, n_out, slope, seed, device, repro):
    net = BiasFreeConvNet(2, 8, channels, n_out, seed=seed, negative_slope=slope, device=device)
    x1, x2 = _inputs(derive_seed(seed, "inputs"), 2, (2, 8, 8), device)
    context = repro(arch=f"conv{channels}->maxpool->linear({n_out})", slope=slope, seed=seed)
    for name in net.layer_names():
        check_homogeneity(net, x1, name, context=context)
        check_gradient_shared(net, x1, x2, name, context=context)


@given(depth=st.integers(1, 3), branching=st.integers(2, 3), hid=st.integers(1, 4), seed=seeds)
def test_gradient_hltm_tree_network(depth, branching, hid, seed, device, repro):
    """The HLTM's tree-mirroring network (docs/THEORY.md §8) is in the class: one weight tensor per level."""
    net = TreeMirrorNet(depth, branching, hid, seed=seed, device=device)
    x1, x2 = _inputs(derive_seed(seed, "inputs"), 2, (net.n_leaves,), device)
    context = repro(arch=f"tree(depth={depth}, c={branching}, hid={hid})", seed=seed)
    for name in net.layer_names():
        check_homogeneity(net, x1, name, context=context)
        check_gradient_shared(net, x1, x2, name, context=context)


def test_gradient_checks_are_sharp(seed, device, repro):
    """The "exact" and "gradient" tolerances are tight enough to matter: K scaled by 1 + 1e-6 is rejected."""
    net = BiasFreeMLP([5, 7, 3], seed=seed, device=device)
    x1, x2 = _inputs(derive_seed(seed, "inputs"), 3, (5,), device)
    scaled = lambda n, x, name: (1 + 1e-6) * connection_dense(n, x, name)
    with pytest.raises(IdentityViolation, match="K_l\\^T w_l \\(dense K\\) vs f_L"):
        check_homogeneity(net, x1, "weights.0", connection=scaled, context=repro(seed=seed))
    with pytest.raises(IdentityViolation, match="Theorem 1, shared weights"):
        check_gradient_shared(net, x1, x2, "weights.1", connection=scaled, context=repro(seed=seed))
