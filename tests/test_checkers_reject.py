"""Every checker can fail: each theorem's check is fed a deliberately wrong quantity and must reject it
with a message that names the violated identity (gradient, balance, simp, residue, frozen gating, sampling)."""
import functools

import pytest
import torch

from dualnet_ssl import losses
from dualnet_ssl.checks import (check_balance, check_frozen_gating_power_iteration, check_gradient_shared,
                              check_gradient_two_networks, check_homogeneity, check_main_term,
                              check_operator_structure, check_residue_ratio_falls, check_residue_zero,
                              check_sampled_error_rate, check_simp_covariance, per_tuple_gradients)
from dualnet_ssl.connection import connection_dense, connection_kron
from dualnet_ssl.distributions import gaussian_augmented, views_as_samples
from dualnet_ssl.errors import BadInput, IdentityViolation, NotApplicable
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.operators import operator_times
from tests.nets_outside_class import ResidualMLP, biased_mlp

f64 = torch.float64


@pytest.fixture
def mlp():
    return BiasFreeMLP([6, 10, 8, 3], seed=1)


@pytest.fixture
def data():
    return gaussian_augmented(5, 3, 6, 0.3, seed=2)


def _pair(seed, dim=6, batch=3):
    g = make_generator(seed)
    return torch.randn(batch, dim, generator=g, dtype=f64), torch.randn(batch, dim, generator=g, dtype=f64)


def misordered_kron(net, x, name):
    """kron(f_{l-1}, J_l^T) (the paper's column-major twin) used with PyTorch's row-major w_l: wrong here."""
    layer = net.layer_names().index(name)
    dense = connection_kron(net, x, layer)
    n_out, n_in = net.weights[layer].shape
    return dense.reshape(x.shape[0], n_out, n_in, -1).transpose(1, 2).reshape(dense.shape)


# ------------------------------------------------------------------ Theorem 1 (gradient)

def test_gradient_check_rejects_misordered_kronecker_product(mlp):
    x1, x2 = _pair(0)
    with pytest.raises(IdentityViolation, match=r"Theorem 1, shared weights, layer weights.1.*max abs diff"):
        check_gradient_shared(mlp, x1, x2, "weights.1", connection=misordered_kron, context="seed=0")
    with pytest.raises(IdentityViolation, match="Theorem 1, two networks"):
        check_gradient_two_networks(mlp, BiasFreeMLP([6, 10, 8, 3], seed=9), x1, x2, "weights.0",
                                    connection=misordered_kron)
    with pytest.raises(IdentityViolation, match="homogeneity"):
        check_homogeneity(mlp, x1, "weights.0", connection=misordered_kron)


def test_gradient_check_rejects_a_broken_gradient(mlp):
    x1, x2 = _pair(1)
    halved = lambda net, x, name: 0.5 * connection_dense(net, x, name)
    with pytest.raises(IdentityViolation, match=r"dr/dw_l \(autograd\) vs \(K1-K2\)\(K1-K2\)\^T w_l"):
        check_gradient_shared(mlp, x1, x2, "weights.2", connection=halved)


def test_gradient_check_on_biased_network_is_not_applicable_and_the_identity_really_fails():
    net = biased_mlp(0)
    x1, x2 = (t[:, :4] for t in _pair(2))
    with pytest.raises(NotApplicable, match="non-zero bias"):
        check_gradient_shared(net, x1, x2, "0.weight")
    # without the screen the homogeneity identity itself fails: the bias is outside f_L = K^T w
    with pytest.raises(IdentityViolation, match="homogeneity"):
        check_homogeneity(net, x1, "0.weight", screen=False)


def test_gradient_check_on_residual_network_is_not_applicable():
    x1, x2 = (t[:, :4] for t in _pair(3))
    with pytest.raises(NotApplicable, match="skip/residual"):
        check_gradient_shared(ResidualMLP(0), x1, x2, "w1")


# ------------------------------------------------------------------ Theorem 2 (balance)

def _distances(seed, h=3):
    g = make_generator(seed)
    return torch.rand(32, generator=g, dtype=f64), torch.rand(32, h, generator=g, dtype=f64) + 0.5


def test_balance_rejects_an_extra_pull_on_positives():
    """The official code's beta != 0 option adds c r_+: then dL/dr_+ + sum_k dL/dr_k- = c != 0."""
    nce = losses.infonce(0.5)
    extra_pull = lambda rp, rn: nce(rp, rn) + 0.1 * rp
    with pytest.raises(IdentityViolation, match="balance: sum_k"):
        check_balance(extra_pull, *_distances(0), context="tau=0.5")


def test_balance_rejects_wrong_signs():
    with pytest.raises(IdentityViolation, match="dL/dr_\\+ must be > 0"):
        check_balance(lambda rp, rn: -losses.simple()(rp, rn), *_distances(1))
    with pytest.raises(IdentityViolation, match="dL/dr_k- must be < 0"):
        check_balance(lambda rp, rn: rp - rn[..., 0] + rn[..., 1] - rn[..., 2], *_distances(1))


def test_balance_rejects_a_wrong_closed_form():
    """A temperature bug in the closed-form weights (tau applied twice) is caught against autograd."""
    wrong = losses.PairLoss("infonce", losses.infonce_loss,
                            lambda rp, rn, tau: losses.infonce_weights(rp, rn, tau=tau * tau), {"tau": 0.5})
    with pytest.raises(IdentityViolation, match="closed form beta"):
        check_balance(wrong, *_distances(2))


def test_balance_refuses_nan_and_non_scalar_losses_clearly():
    with pytest.raises(BadInput, match="non-finite"):
        check_balance(lambda rp, rn: torch.log(rp - 10.0) + 0 * rn.sum(-1), *_distances(3))
    with pytest.raises(BadInput, match="shape"):
        check_balance(lambda rp, rn: losses.simple()(rp, rn).mean(), *_distances(3))


# ------------------------------------------------------------------ Theorem 3 (simp)

def test_simp_check_rejects_factor_one(mlp, data):
    with pytest.raises(IdentityViolation, match=r"vs 1 V\[Kbar_l\] w_l \[Theorem 3, layer weights.0"):
        check_simp_covariance(mlp, "weights.0", data, factor=1.0, context="seed=2")


def test_simp_check_rejects_total_variance_instead_of_variance_of_means(mlp, data):
    total_variance = lambda net, name, d: operator_times(net, name, views_as_samples(d))
    with pytest.raises(IdentityViolation, match="Theorem 3"):
        check_simp_covariance(mlp, "weights.1", data, operator=total_variance)


def test_simp_operator_structure_rejects_negative_pair_weights(mlp, data):
    repulsive = -torch.ones(5, 5, dtype=f64)
    with pytest.raises(IdentityViolation, match="not PSD"):
        check_operator_structure(mlp, "weights.1", data, repulsive)


def test_simp_frozen_gating_rejects_factor_one(mlp, data):
    with pytest.raises(IdentityViolation, match=r"\(I \+ 1 alpha OP\)\^1 w_0 \[Theorem 3, frozen gating"):
        check_frozen_gating_power_iteration(mlp, "weights.1", data, alpha=0.05, steps=2, factor=1.0)


def test_simp_sampled_error_rate_rejects_a_biased_estimator(mlp, data):
    """Negatives down-weighted by 10%: batches converge to the wrong gradient, and large B exposes it."""
    biased = lambda rp, rn: rp - 0.9 * rn[..., 0]
    with pytest.raises(IdentityViolation, match=r"tr\(Sigma\).*B=\d+"):
        check_sampled_error_rate(mlp, "weights.1", data, batch_sizes=(4, 64, 1024), n_batches=400, seed=0,
                                 per_tuple=functools.partial(per_tuple_gradients, loss=biased))


# ------------------------------------------------------------------ Theorem 4 (residue)

@pytest.mark.parametrize("loss, n_negatives", [(losses.triplet(0.5, 0.1), 1), (losses.infonce(0.5), 2)])
def test_residue_zero_check_rejects_nonzero_residue_under_augmentation(mlp, data, loss, n_negatives):
    """At sigma = 0.3 the residue of Triplet/InfoNCE is not zero: the exact-zero check must say so."""
    with pytest.raises(IdentityViolation, match="theta must be 0"):
        check_residue_zero(mlp, "weights.1", data, loss, n_negatives=n_negatives)


def test_residue_main_term_rejects_a_loss_whose_negatives_attract(mlp, data):
    attract = lambda rp, rn: rp + 0.5 * rn.sum(-1)
    with pytest.raises(IdentityViolation, match="pair mass has negative entries"):
        check_main_term(mlp, "weights.1", data, attract)


def test_residue_ratio_check_rejects_non_monotone_and_wrong_exponent():
    with pytest.raises(IdentityViolation, match="does not fall"):
        check_residue_ratio_falls({"sigmas": [0.1, 0.3], "ratios": [0.5, 0.2], "exponent": -0.8}, (1.5, 2.5))
    with pytest.raises(IdentityViolation, match="exponent 1.00"):
        check_residue_ratio_falls({"sigmas": [0.1, 0.3], "ratios": [0.1, 0.3], "exponent": 1.0}, (1.5, 2.5))


def test_residue_check_refuses_a_nan_loss_clearly(mlp, data):
    with pytest.raises(BadInput, match="non-finite"):
        check_residue_zero(mlp, "weights.1", data, lambda rp, rn: torch.sqrt(rp - 1e6) - rn[..., 0])
