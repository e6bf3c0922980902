"""Unit tests of reference/: shapes, dense vs. structured products, losses against hand-computed values,
exact enumeration against brute force, and clear errors on bad input."""
import itertools
import math

import pytest
import torch
from torch import nn

from dualnet_ssl import losses
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.connection import (connection_autograd, connection_conv, connection_kron, connection_times,
                                    connection_transpose_times, top_down_jacobians)
from dualnet_ssl.distributions import (DiscreteAugmentedData, enumerate_loss, gaussian_augmented,
                                       random_probabilities, views_as_samples)
from dualnet_ssl.errors import BadInput, IdentityViolation, NotApplicable
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP, check_theorem_class
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.operators import (laplacian, numerical_rank, operator_dense, operator_from_definition, operator_times,
                                   symmetric_eigenvalues, variance_pair_mass)
from dualnet_ssl.tolerances import _TABLE, tolerance
from theorems.nets_outside_class import ResidualMLP, batchnorm_mlp, biased_mlp

f64 = torch.float64


def _x(seed, *shape):
    return torch.randn(*shape, generator=make_generator(seed), dtype=f64)


# ------------------------------------------------------------------ networks

def test_mlp_shapes_and_seeded_weights():
    net = BiasFreeMLP([5, 7, 3], seed=11)
    assert [tuple(w.shape) for w in net.weights] == [(7, 5), (3, 7)]
    assert net(_x(0, 4, 5)).shape == (4, 3)
    assert torch.equal(net.weights[0], BiasFreeMLP([5, 7, 3], seed=11).weights[0])
    assert not torch.equal(net.weights[0], BiasFreeMLP([5, 7, 3], seed=12).weights[0])


def test_mlp_forward_matches_relu_composition():
    net = BiasFreeMLP([5, 7, 6, 3], seed=1, negative_slope=0.2)
    x = _x(2, 4, 5)
    act = nn.LeakyReLU(0.2)
    expected = act(act(x @ net.weights[0].T) @ net.weights[1].T) @ net.weights[2].T
    assert_identity(net(x), expected, what="BiasFreeMLP forward vs nn.LeakyReLU composition")


@pytest.mark.parametrize("widths", [[3], [3, 0, 2], []])
def test_mlp_rejects_bad_widths(widths):
    with pytest.raises(BadInput, match="widths"):
        BiasFreeMLP(widths, seed=0)


def test_mlp_and_conv_reject_wrong_input_shapes():
    with pytest.raises(BadInput, match=r"\(batch, 5\)"):
        BiasFreeMLP([5, 3], seed=0)(_x(0, 2, 4))
    with pytest.raises(BadInput, match="BiasFreeConvNet expects"):
        BiasFreeConvNet(2, 8, [3], 2, seed=0)(_x(0, 2, 3, 8, 8))


def test_theorem_class_accepts_bias_free_torch_modules():
    net = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.MaxPool1d(1), nn.Linear(8, 3, bias=False)).double()
    check_theorem_class(net, _x(0, 5, 4))
    check_theorem_class(BiasFreeConvNet(2, 8, [3, 2], 4, seed=0), _x(1, 3, 2, 8, 8))


@pytest.mark.parametrize("make_net, reason", [
    (biased_mlp, "non-zero bias"),
    (ResidualMLP, "not positively homogeneous in layer 'w1'"),
    (batchnorm_mlp, "BatchNorm1d"),
])
def test_theorem_class_refuses_nets_outside_it_with_the_reason(make_net, reason):
    with pytest.raises(NotApplicable, match=reason):
        check_theorem_class(make_net(0), _x(0, 5, 4))


# ------------------------------------------------------------------ connection

@pytest.mark.parametrize("slope", [0.0, 0.3, 1.0])
def test_kron_connection_equals_autograd_jacobian(slope):
    net = BiasFreeMLP([4, 6, 5, 3], seed=3, negative_slope=slope)
    x = _x(4, 3, 4)
    for layer, name in enumerate(net.layer_names()):
        dense = connection_kron(net, x, layer)
        assert dense.shape == (3, net.weights[layer].numel(), 3)
        assert_identity(dense, connection_autograd(net, x, name), what=f"kron K vs autograd K, {name}")


@pytest.mark.parametrize("channels, size, slope", [([2], 8, 0.0), ([3, 2], 8, 0.2), ([1, 2], 5, 0.0), ([2], 4, 1.0)])
def test_conv_closed_form_connection_equals_autograd_jacobian(channels, size, slope):
    """im2col patches kron J^T, with J from a hand-written backward pass (max-unpooling, gates, transposed
    convolutions), equals autograd's Jacobian: odd sizes (floor pooling), leaky and linear gates included."""
    net = BiasFreeConvNet(2, size, channels, 3, seed=1, negative_slope=slope)
    x = _x(2, 3, 2, size, size)
    for name in net.layer_names():
        dense = connection_conv(net, x, name)
        assert dense.shape == (3, dict(net.named_parameters())[name].numel(), 3)
        assert_identity(dense, connection_autograd(net, x, name), what=f"closed-form conv K vs autograd K, {name}")


def test_top_down_jacobian_is_autograd_jacobian_of_output():
    net = BiasFreeMLP([4, 6, 5, 3], seed=5)
    x = _x(6, 2, 4)
    _, pres, _ = net.forward_cache(x)
    jac = top_down_jacobians(net, x)
    assert jac[-1].shape == (2, 3, 3) and torch.equal(jac[-1][0], torch.eye(3, dtype=f64))
    gates = net.gates(x)
    # J_1 by autograd: d f_L / d f~_1 with f~_1 as a free input
    pre1 = pres[0].detach().requires_grad_(True)
    out = ((gates[1] * ((gates[0] * pre1) @ net.weights[1].T)) @ net.weights[2].T)
    rows = [torch.autograd.grad(out[:, o].sum(), pre1, retain_graph=True)[0] for o in range(3)]
    assert_identity(jac[0], torch.stack(rows, 1), what="J_1 closed form vs autograd")


def test_structured_products_match_dense_connection():
    net = BiasFreeConvNet(1, 4, [2], 3, seed=7)
    x = _x(8, 3, 1, 4, 4)
    for name in net.layer_names():
        dense = connection_autograd(net, x, name)
        u = _x(9, 3, 3)
        v = _x(10, dense.shape[1])
        assert_identity(connection_times(net, x, name, u), torch.einsum("bpo,bo->p", dense, u), what="K u")
        assert_identity(connection_transpose_times(net, x, name, v), torch.einsum("bpo,p->bo", dense, v), what="K^T v")


def test_structured_products_refuse_wrong_shapes():
    net = BiasFreeMLP([4, 3], seed=0)
    with pytest.raises(BadInput, match="cotangent shape"):
        connection_times(net, _x(0, 2, 4), "weights.0", _x(1, 2, 4))
    with pytest.raises(BadInput, match="has 12"):
        connection_transpose_times(net, _x(0, 2, 4), "weights.0", _x(1, 5))
    with pytest.raises(BadInput, match="not a parameter"):
        connection_times(net, _x(0, 2, 4), "weights.7", _x(1, 2, 3))


# ------------------------------------------------------------------ losses

def test_losses_against_hand_computed_values():
    r_pos, r_neg = torch.tensor([1.0], dtype=f64), torch.tensor([[2.0, 4.0]], dtype=f64)
    assert float(losses.simple()(r_pos, r_neg)) == pytest.approx(1.0 - 3.0, abs=1e-15)
    assert float(losses.triplet(1.0, 0.0)(r_pos, r_neg[:, :1])) == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-15)
    assert float(losses.triplet(0.5, 0.2)(r_pos, r_neg[:, :1])) == pytest.approx(
        0.5 * math.log(1 + math.exp((1.0 - 2.0 + 0.2) / 0.5)), abs=1e-15)
    expected_nce = -0.5 * math.log(math.exp(-2.0) / (math.exp(-2.0) + math.exp(-4.0) + math.exp(-8.0)))
    assert float(losses.infonce(0.5)(r_pos, r_neg)) == pytest.approx(expected_nce, abs=1e-14)
    assert float(losses.pair_distance(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))) == pytest.approx(2.5)


def test_infonce_on_unit_vectors_is_tau_times_nt_xent():
    """docs/THEORY.md §4: for unit-norm outputs r = 1 - cos, so NT-Xent(tau) = L_nce^tau / tau."""
    z = torch.nn.functional.normalize(_x(1, 4, 6), dim=1)
    anchor, positive, negatives = z[0], z[1], z[2:]
    tau = 0.3
    logits = torch.cat([(anchor @ positive)[None], negatives @ anchor]) / tau
    nt_xent = -torch.log_softmax(logits, 0)[0]
    r_pos = losses.pair_distance(anchor, positive)
    r_neg = losses.pair_distance(anchor[None], negatives)
    assert float(losses.infonce(tau)(r_pos, r_neg) / tau) == pytest.approx(float(nt_xent), abs=1e-13)


def test_infonce_is_stable_at_small_temperature():
    r_pos, r_neg = torch.tensor([0.0], dtype=f64), torch.tensor([[50.0, 60.0]], dtype=f64)
    assert torch.isfinite(losses.infonce(0.01)(r_pos, r_neg)).all()
    assert torch.isfinite(losses.triplet(0.01, 0.0)(r_pos + 50, r_neg[:, :1] - 50)).all()


def test_loss_constructors_refuse_bad_parameters():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(BadInput, match="tau must be a positive finite number"):
            losses.infonce(bad)
    with pytest.raises(BadInput, match="exactly one negative"):
        losses.triplet()(torch.zeros(2, dtype=f64), torch.zeros(2, 3, dtype=f64))


@pytest.mark.parametrize("bad_loss, message", [
    (lambda rp, rn: rp * float("nan"), "non-finite"),
    (lambda rp, rn: (rp - rn.mean(-1)).sum(), "shape"),
    (lambda rp, rn: 3.0, "expected a tensor"),
])
def test_bad_losses_get_a_clear_error(bad_loss, message):
    with pytest.raises(BadInput, match=message):
        losses.autograd_weights(bad_loss, torch.rand(4, dtype=f64), torch.rand(4, 2, dtype=f64))


# ------------------------------------------------------------------ distributions

def test_gaussian_augmented_distribution():
    data = gaussian_augmented(4, 3, 5, 0.2, seed=1)
    assert data.views.shape == (4, 3, 5) and data.flat_views().shape == (12, 5)
    assert_identity(data.view_probs().sum(), torch.tensor(1.0, dtype=f64), what="view probabilities")
    still = gaussian_augmented(4, 3, 5, 0.0, seed=1)
    assert torch.equal(still.views[:, 0], still.views[:, 2]), "sigma = 0 must give identical views"
    wider = gaussian_augmented(4, 3, 5, 0.5, seed=1)
    assert_identity((wider.views - still.views) / 0.5, (data.views - still.views) / 0.2,
                    what="sigma sweep rescales one fixed noise pattern")
    excl = data.negative_view_probs(exclude_self=True).reshape(4, 4, 3)
    assert torch.all(excl[torch.arange(4), torch.arange(4)] == 0)
    assert_identity(excl.sum((1, 2)), torch.ones(4, dtype=f64), what="negative probabilities exclude self")


def test_random_probabilities_are_seeded_normalised_and_far_from_uniform():
    base = gaussian_augmented(5, 3, 4, 0.2, seed=1)
    data = random_probabilities(base, seed=7)
    assert torch.equal(data.views, base.views)
    assert torch.equal(data.aug_probs, random_probabilities(base, seed=7).aug_probs)
    assert_identity(data.aug_probs.sum(1), torch.ones(5, dtype=f64), what="augmentation probabilities")
    assert_identity(data.sample_probs.sum(), torch.tensor(1.0, dtype=f64), what="sample probabilities")
    assert float(data.sample_probs.max() / data.sample_probs.min()) > 2 and float(data.aug_probs.std()) > 0.05
    same_samples = random_probabilities(base, seed=7, samples=False)
    assert torch.equal(same_samples.sample_probs, base.sample_probs)
    assert torch.equal(same_samples.aug_probs, data.aug_probs)


def test_distribution_validation():
    views = torch.zeros(2, 3, 4, dtype=f64)
    with pytest.raises(BadInput, match="aug_probs"):
        DiscreteAugmentedData(views, torch.full((2, 2), 0.5, dtype=f64), torch.full((2,), 0.5, dtype=f64))
    with pytest.raises(BadInput, match="sum to 1"):
        DiscreteAugmentedData(views, torch.full((2, 3), 0.5, dtype=f64), torch.full((2,), 0.5, dtype=f64))
    with pytest.raises(BadInput, match="non-finite"):
        DiscreteAugmentedData(views * float("nan"), torch.full((2, 3), 1 / 3, dtype=f64), torch.full((2,), 0.5, dtype=f64))


def _brute_force_expectation(data, outputs, loss, n_negatives):
    """E[L] and the pair mass by explicit loops over every tuple (the definition, docs/THEORY.md §6-7)."""
    n, m = data.aug_probs.shape
    flat = outputs.reshape(n * m, -1)
    p_view = data.view_probs()
    expected, mass = 0.0, torch.zeros(n, n, dtype=f64)
    for i, a, b in itertools.product(range(n), range(m), range(m)):
        anchor, positive = flat[i * m + a], flat[i * m + b]
        for negs in itertools.product(range(n * m), repeat=n_negatives):
            prob = data.sample_probs[i] * data.aug_probs[i, a] * data.aug_probs[i, b] * torch.prod(p_view[list(negs)])
            r_pos = losses.pair_distance(anchor, positive)[None]
            r_neg = torch.stack([losses.pair_distance(anchor, flat[v]) for v in negs])[None]
            expected += prob * loss(r_pos, r_neg)[0]
            _, beta_neg = losses.autograd_weights(loss, r_pos, r_neg)
            for k, v in enumerate(negs):
                mass[i, v // m] += prob * beta_neg[0, k]
    return expected, mass


@pytest.mark.parametrize("loss, n_negatives", [(losses.infonce(0.7), 2), (losses.triplet(0.5, 0.1), 1)])
def test_enumerated_loss_equals_brute_force(loss, n_negatives):
    data = gaussian_augmented(2, 2, 3, 0.5, seed=2)
    outputs = _x(3, 2, 2, 2)
    enum = enumerate_loss(data, outputs, loss, n_negatives)
    expected, mass = _brute_force_expectation(data, outputs, loss, n_negatives)
    assert_identity(enum.expected, expected, what="enumerated E[L] vs loops")
    assert_identity(enum.pair_mass, mass, what="enumerated pair mass vs loops")


def test_enumeration_refuses_bad_shapes_and_sizes():
    data = gaussian_augmented(3, 2, 4, 0.1, seed=0)
    with pytest.raises(BadInput, match=r"outputs must have shape \(3, 2, n_L\)"):
        enumerate_loss(data, _x(0, 6, 2), losses.simple())
    with pytest.raises(BadInput, match="exceeds"):
        enumerate_loss(gaussian_augmented(10, 4, 2, 0.1, seed=0), _x(0, 10, 4, 2), losses.infonce(), n_negatives=5)
    with pytest.raises(BadInput, match="non-finite"):
        enumerate_loss(data, _x(0, 3, 2, 2), lambda rp, rn: rp / 0.0 - rn.sum(-1) / 0.0)


# ------------------------------------------------------------------ operators

def test_structured_operator_matches_dense_for_any_pair_mass_and_vector():
    net = BiasFreeMLP([4, 6, 3], seed=1)
    data = gaussian_augmented(3, 2, 4, 0.3, seed=2)
    mass = torch.rand(3, 3, generator=make_generator(3), dtype=f64)
    for name in net.layer_names():
        dense = operator_dense(net, name, data, mass)
        w = dict(net.named_parameters())[name].detach().flatten()
        u = _x(4, w.numel())
        assert_identity(operator_times(net, name, data, mass), dense @ w, what="OP w structured vs dense")
        assert_identity(operator_times(net, name, data, mass, vector=u), dense @ u, what="OP u structured vs dense")


def test_operator_from_definition_equals_the_laplacian_form_on_random_probabilities():
    net = BiasFreeMLP([4, 6, 3], seed=1)
    data = random_probabilities(gaussian_augmented(4, 3, 4, 0.3, seed=2), seed=3)
    mass = torch.rand(4, 4, generator=make_generator(4), dtype=f64)
    for name in net.layer_names():
        variance = operator_from_definition(net, name, data)
        assert_identity(variance, operator_dense(net, name, data), what="V[Kbar] definition vs Laplacian")
        assert_identity(operator_from_definition(net, name, data, variance_pair_mass(data)), variance,
                        what="pairwise form with A = p p^T vs V[Kbar]")
        assert_identity(operator_from_definition(net, name, data, mass), operator_dense(net, name, data, mass),
                        what="weighted definition vs Laplacian")


def test_laplacian_is_psd_with_zero_row_sums():
    mass = torch.rand(5, 5, generator=make_generator(0), dtype=f64)
    lap = laplacian(mass)
    assert_identity(lap.sum(1), torch.zeros(5, dtype=f64), what="Laplacian row sums")
    assert float(symmetric_eigenvalues(lap).min()) > -1e-14 * float(lap.abs().max())


def test_numerical_rank_and_eigenvalue_input_checks():
    assert numerical_rank(torch.tensor([0.0, 1e-15, 0.5, 2.0], dtype=f64)) == 2
    assert numerical_rank(torch.zeros(3, dtype=f64)) == 0
    with pytest.raises(BadInput, match="square"):
        symmetric_eigenvalues(torch.zeros(2, 3, dtype=f64))


def test_views_as_samples_has_one_view_per_sample():
    data = views_as_samples(gaussian_augmented(3, 2, 4, 0.3, seed=0))
    assert data.views.shape == (6, 1, 4) and torch.all(data.aug_probs == 1)


# ------------------------------------------------------------------ comparison and tolerances

def test_assert_identity_reports_the_worst_entry_and_refuses_nan():
    expected = torch.arange(6, dtype=f64).reshape(2, 3)
    actual = expected.clone()
    actual[1, 2] += 1e-3
    with pytest.raises(IdentityViolation, match=r"worst at index \(1, 2\).*allowed rtol=1e-10, atol=1e-12"):
        assert_identity(actual, expected, what="q", context="ctx")
    with pytest.raises(IdentityViolation, match="non-finite"):
        assert_identity(expected * float("nan"), expected, what="q")
    with pytest.raises(IdentityViolation, match="shape"):
        assert_identity(expected.T, expected, what="q")


def test_every_tolerance_has_both_bounds_and_a_reason():
    for key, tol in _TABLE.items():
        assert tol.rtol > 0 and tol.atol > 0 and len(tol.reason) > 20, key
    with pytest.raises(KeyError, match="kinds"):
        tolerance(f64, "no-such-kind")
