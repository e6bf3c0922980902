"""Every checker can fail: each theorem's check is fed a deliberately wrong quantity and must reject it
with a message that names the violated identity (gradient, balance, simp, residue, frozen gating, sampling)."""
import functools

import pytest
import torch

from dualnet_ssl import losses
from dualnet_ssl.checks import (assert_psd, check_balance, check_frozen_gating_power_iteration, check_gradient_shared,
                                check_gradient_two_networks, check_homogeneity, check_main_term,
                                check_operator_structure, check_residue_falls_with_augmentation,
                                check_residue_ratio_falls, check_residue_zero, check_simp_covariance)
from dualnet_ssl.connection import connection_dense, connection_kron
from dualnet_ssl.distributions import gaussian_augmented, random_probabilities, views_as_samples
from dualnet_ssl.errors import BadInput, IdentityViolation, NotApplicable
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP
from dualnet_ssl.operators import mean_connections, operator_from_definition, operator_times
from dualnet_ssl.sampled import check_sampled_error_rate, per_tuple_gradients
from dualnet_ssl.residue_bound import check_residue_bound
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.thresholds import (DIGITS_MLP_EXPONENT_HIGH, DIGITS_MLP_EXPONENT_LOW, EXACT_PAIR_MASS_SIGN,
                                    EXACT_RANK_EXCESS, EXACT_SIGN, RESIDUE_MIN_EXPONENT, RESIDUE_MIN_SPREAD_DROP,
                                    Z_SCORE_FALSE_ALARM)
from dualnet_ssl.tolerances import tolerance
from dualnet_ssl.training import Trajectory, check_residue_shrinks
from theorems.nets_outside_class import ResidualMLP, biased_mlp
from theorems.faults import shrunken_batches

f64 = torch.float64


@pytest.fixture
def mlp():
    return BiasFreeMLP([6, 10, 8, 3], seed=1)


@pytest.fixture
def data():
    """Random, non-uniform probabilities: a weighting error cannot cancel."""
    return random_probabilities(gaussian_augmented(5, 3, 6, 0.3, seed=2), seed=3)


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


def test_gradient_check_rejects_a_conv_connection_with_a_flipped_kernel():
    """The conv net's closed-form K is independent of autograd: im2col with the kernel flipped (convolution instead
    of PyTorch's cross-correlation) is rejected."""
    net = BiasFreeConvNet(2, 8, [3], 2, seed=0)
    x = torch.randn(2, 2, 8, 8, generator=make_generator(4), dtype=f64)

    def flipped(n, xs, name):
        k = connection_dense(n, xs, name)
        return k.reshape(2, 3, 2, 3, 3, 2).flip(3, 4).reshape(k.shape)
    with pytest.raises(IdentityViolation, match=r"homogeneity f_L = K_l\^T w_l, layer convs.0"):
        check_homogeneity(net, x, "convs.0", connection=flipped)
    with pytest.raises(IdentityViolation, match="Theorem 1, shared weights, layer convs.0"):
        check_gradient_shared(net, x, x.flip(0), "convs.0", connection=flipped)


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


def test_simp_check_rejects_uniform_sample_weights(mlp, data):
    """V[Kbar] with uniform sample weights equals the right one on uniform data only; on random data it fails."""
    def uniform_weights(net, name, d):
        n = d.n_samples
        return operator_times(net, name, d, torch.full((n, n), 1.0 / n ** 2, dtype=f64))
    with pytest.raises(IdentityViolation, match="Theorem 3"):
        check_simp_covariance(mlp, "weights.1", data, operator=uniform_weights)


def test_simp_operator_structure_rejects_negative_pair_weights(mlp, data):
    repulsive = -torch.ones(5, 5, dtype=f64)
    with pytest.raises(IdentityViolation, match="not PSD"):
        check_operator_structure(mlp, "weights.1", data, repulsive)


def _second_moment(net, name, data, pair_mass=None):
    """E[Kbar Kbar^T], not centred: PSD and symmetric, but of rank N n_L."""
    kbar = mean_connections(net, name, data).detach()
    return torch.einsum("i,ipo,iqo->pq", data.sample_probs, kbar, kbar)


def test_simp_operator_structure_rejects_an_operator_of_too_high_rank(data):
    net = BiasFreeMLP([6, 5, 4, 3], seed=1, negative_slope=1.0)       # linear: the bound is attained
    with pytest.raises(IdentityViolation, match=r"rank\(OP_l\) = 15 exceeds \(N-1\) n_L = 12"):
        check_operator_structure(net, "weights.0", data, definition=_second_moment)


def test_simp_operator_structure_rejects_an_operator_centred_on_the_unweighted_mean(mlp, data):
    def unweighted_centre(net, name, d, pair_mass=None):
        kbar = mean_connections(net, name, d).detach()
        centred = kbar - kbar.mean(0)
        return torch.einsum("i,ipo,iqo->pq", d.sample_probs, centred, centred)
    with pytest.raises(IdentityViolation, match="structured OP_l w vs OP_l w from the definition"):
        check_operator_structure(mlp, "weights.1", data, definition=unweighted_centre)


def test_simp_operator_structure_rejects_a_structured_product_with_uniform_augmentation_weights(mlp, data):
    """The structured product is checked against the definition on non-uniform augmentation probabilities."""
    wrong = operator_from_definition(mlp, "weights.1", type(data)(data.views, torch.full_like(data.aug_probs, 1 / 3),
                                                                  data.sample_probs))
    with pytest.raises(IdentityViolation, match="structured OP_l w vs OP_l w from the definition"):
        check_operator_structure(mlp, "weights.1", data, definition=lambda *args: wrong)


def test_psd_helper_rejects_a_small_negative_eigenvalue_and_accepts_rounding():
    q = torch.linalg.qr(torch.randn(6, 6, generator=make_generator(0), dtype=f64)).Q
    eig = torch.tensor([-1e-7, 0.0, 0.5, 1.0, 2.0, 3.0], dtype=f64)
    with pytest.raises(IdentityViolation, match="M is not PSD.*smallest eigenvalue -1.0"):
        assert_psd(q @ torch.diag(eig) @ q.T, what="M")
    eig[0] = -1e-13
    assert float(assert_psd(q @ torch.diag(eig) @ q.T, what="M").min()) < 0


def test_simp_frozen_gating_rejects_factor_one(mlp, data):
    with pytest.raises(IdentityViolation, match=r"\(I \+ 1 alpha OP\)\^1 w_0 \[Theorem 3, frozen gating"):
        check_frozen_gating_power_iteration(mlp, "weights.1", data, alpha=0.05, steps=2, factor=1.0)


@pytest.fixture(scope="module")
def sampled_case():
    """The sampled-batch case of theorems/test_simp.py at a fixed seed."""
    net = BiasFreeMLP([8, 16, 8], seed=7)
    return net, random_probabilities(gaussian_augmented(6, 2, 8, 0.3, seed=8), seed=9)


def _sampled(case, **kwargs):
    net, data = case
    return check_sampled_error_rate(net, "weights.0", data, **kwargs)


def test_simp_sampled_error_rate_rejects_a_biased_estimator(sampled_case):
    """Negatives down-weighted by 10%: the mean of the tuple gradients is not the Theorem 3 gradient."""
    biased = lambda rp, rn: rp - 0.9 * rn[..., 0]
    with pytest.raises(IdentityViolation, match=r"E\[per-tuple gradient\].*vs -2 V\[Kbar_l\] w_l"):
        _sampled(sampled_case, batch_sizes=(8,), n_batches=10, seed=0,
                                 per_tuple=functools.partial(per_tuple_gradients, loss=biased))


def test_simp_sampled_error_rate_rejects_uniform_tuple_weights(sampled_case):
    def uniform(net, name, d):
        grads, probs = per_tuple_gradients(net, name, d)
        return grads, torch.full_like(probs, 1.0 / probs.numel())
    with pytest.raises(IdentityViolation, match=r"E\[per-tuple gradient\]"):
        _sampled(sampled_case, batch_sizes=(8,), n_batches=10, seed=0, per_tuple=uniform)


@pytest.mark.parametrize("seed", [0, 1])
def test_simp_sampled_error_rate_detects_a_five_percent_trace_error(sampled_case, seed):
    kwargs = dict(batch_sizes=(8, 32, 128), n_batches=8000, seed=seed)
    assert _sampled(sampled_case, **kwargs).details["power_at_5pct"] > 0.99
    with pytest.raises(IdentityViolation, match=r"= 1\.0[3-7]\d\d \+- 0\.00\d\d \(pooled over B\)") as err:
        _sampled(sampled_case, sampler=shrunken_batches, **kwargs)
    record = err.value.result
    assert record.measured > float(Z_SCORE_FALSE_ALARM) and record.seed == seed, record
    assert record.where == "layer weights.0, pooled over B" and record.tolerance_reason.startswith(
        Z_SCORE_FALSE_ALARM.reason), record


def test_simp_sampled_error_rate_rejects_sampling_without_replacement(sampled_case):
    def without_replacement(probs, batch, n_batches, generator):
        picks = torch.multinomial(probs.expand(n_batches, -1), batch, replacement=False, generator=generator)
        return torch.zeros(n_batches, probs.numel(), dtype=f64).scatter_(1, picks, 1.0)
    with pytest.raises(IdentityViolation, match="standard errors"):
        _sampled(sampled_case, batch_sizes=(8, 32, 128), n_batches=8000, seed=0,
                                 sampler=without_replacement)


def test_simp_sampled_error_rate_refuses_to_run_underpowered(sampled_case):
    with pytest.raises(BadInput, match="underpowered: power 0.\\d+ against a 5% error"):
        _sampled(sampled_case, batch_sizes=(8, 32), n_batches=50, seed=0)


def test_simp_sampled_error_rate_rejects_a_trace_centred_on_the_unweighted_mean(sampled_case):
    """tr(Sigma) is checked against E||g_c||^2 - ||g||^2 (g from the structured operator)."""
    unweighted = lambda grads, probs: probs @ ((grads - grads.mean(0)) ** 2).sum(1)
    with pytest.raises(IdentityViolation, match=r"tr\(Sigma\) = E\|\|g_c - g\|\|\^2 vs"):
        _sampled(sampled_case, batch_sizes=(8,), n_batches=10, seed=0, trace=unweighted)


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


def test_residue_augmentation_check_rejects_non_monotone_and_a_linear_residue():
    with pytest.raises(IdentityViolation, match="does not fall"):
        check_residue_falls_with_augmentation({"sigmas": [0.1, 0.3], "theta_norms": [0.5, 0.2],
                                               "theta_exponent": -0.8}, 1.3)
    with pytest.raises(IdentityViolation, match="exponent 1.00 .* below the measured lower bound 1.3"):
        check_residue_falls_with_augmentation({"sigmas": [0.1, 0.3], "theta_norms": [0.1, 0.3],
                                               "theta_exponent": 1.0}, 1.3)


def test_residue_check_refuses_a_nan_loss_clearly(mlp, data):
    with pytest.raises(BadInput, match="non-finite"):
        check_residue_zero(mlp, "weights.1", data, lambda rp, rn: torch.sqrt(rp - 1e6) - rn[..., 0])


# ------------------------------------------------------------------ every failure is one record (issue 14)

def _halved(net, x, name):
    return 0.5 * connection_dense(net, x, name)


def _stalled_run():
    """A two-record run whose spread and residue did not move: it must fail the training check."""
    return Trajectory("L_tri, stalled", ["weights.0"], steps=[0, 300], expected_loss=[1.0, 1.0], r_pos=[0.5, 0.5],
                      r_neg=[1.0, 1.0], theta_norm=[[1.0], [1.0]], main_norm=[[1.0], [1.0]], grad_norm=[[1.0], [1.0]])


FAULTS = {   # checker fed one fault -> (the table entry it must cite, a part of `where`)
    "gradient, K halved": (lambda mlp, data, ctx: check_gradient_shared(
        mlp, *_pair(0), "weights.1", connection=_halved, context=ctx),
        tolerance(f64, "gradient"), "layer weights.1, index"),
    "balance, negatives pushed": (lambda mlp, data, ctx: check_balance(
        lambda rp, rn: rp + rn.sum(-1), *_distances(1), context=ctx), EXACT_SIGN, "entry"),
    "operator rank, uncentred": (lambda mlp, data, ctx: check_operator_structure(
        BiasFreeMLP([6, 5, 4, 3], seed=1, negative_slope=1.0), "weights.0", data, definition=_second_moment,
        context=ctx), EXACT_RANK_EXCESS, "layer weights.0"),
    "main term, attracting negatives": (lambda mlp, data, ctx: check_main_term(
        mlp, "weights.1", data, lambda rp, rn: rp + 0.5 * rn.sum(-1), context=ctx), EXACT_PAIR_MASS_SIGN,
        "layer weights.1"),
    "residue, linear in sigma": (lambda mlp, data, ctx: check_residue_falls_with_augmentation(
        {"sigmas": [0.1, 0.3], "theta_norms": [0.1, 0.3], "theta_exponent": 1.0}, RESIDUE_MIN_EXPONENT, context=ctx),
        RESIDUE_MIN_EXPONENT, "sigmas=[0.1, 0.3]"),
    "residue ratio, exponent out of range": (lambda mlp, data, ctx: check_residue_ratio_falls(
        {"sigmas": [0.1, 0.3], "ratios": [0.1, 0.2], "exponent": 0.63},
        (DIGITS_MLP_EXPONENT_LOW, DIGITS_MLP_EXPONENT_HIGH), context=ctx), DIGITS_MLP_EXPONENT_LOW, "sigmas=[0.1, 0.3]"),
    "training, stalled run": (lambda mlp, data, ctx: check_residue_shrinks(_stalled_run(), ctx),
                              RESIDUE_MIN_SPREAD_DROP, "outputs"),
    "residue bound, exceeded": (lambda mlp, data, ctx: check_residue_bound(
        2.0, 1.0, slack=tolerance(f64, "gradient"), context=ctx.within("layer weights.0", where="layer weights.0")),
        tolerance(f64, "gradient"), "layer weights.0"),
    "PSD, negative pair mass": (lambda mlp, data, ctx: check_operator_structure(
        mlp, "weights.1", data, -torch.ones(5, 5, dtype=f64), context=ctx), tolerance(f64, "eigenvalue"),
        "layer weights.1"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_core_failure_carries_figure_limit_with_reason_where_seed_and_reproduce_line(fault, mlp, data, seed,
                                                                                         repro):
    checker, limit, where = FAULTS[fault]
    context = repro(seed=seed)
    with pytest.raises(IdentityViolation) as err:
        checker(mlp, data, context)
    result = err.value.result
    assert result.status == "fail" and result.measured is not None, result
    assert result.tolerance and result.tolerance_reason.startswith(limit.reason), result
    assert limit.reason in str(err.value), f"the message must state why the limit is what it is: {err.value}"
    assert where in result.where and result.seed == seed, result
    assert result.reproduce == context.reproduce and "pytest '" in result.reproduce, result   # unlocked: DUALNET_SEED=n first


def test_a_core_checker_returns_its_record_on_a_pass(mlp, data, seed, repro):
    result = check_operator_structure(mlp, "weights.1", data, context=repro(seed=seed))
    assert result.ok and result.seed == seed and result.where == "layer weights.1", result
    assert result.measured <= tolerance(f64, "exact").rtol and result.details["rank"] <= result.details["rank_bound"]
