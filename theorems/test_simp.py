"""Theorem 3 (docs/THEORY.md §6): for L_simp the gradient is exactly a covariance operator.

On an exact discrete distribution (N samples, M augmentations each, every tuple enumerated):

    -dE[L_simp]/dw_l = 2 OP_l w_l,   OP_l = V_{x~p}[Kbar_l(x)],   Kbar_l(x) = E_{x'~p_aug(.|x)} K_l(x').

Consequences checked: the factor becomes 2N/(N-1) when self-negatives are excluded; OP_l is symmetric
PSD with rank <= (N-1) n_L (the bound is attained, so it is the right one); a feature that varies only under
augmentation receives no gradient; with gating frozen, gradient descent is the power iteration
w <- (I + 2 alpha OP) w; with sampled batches the identity holds in expectation and E||g_B - g||^2 = tr(Sigma)/B.
Sample and augmentation probabilities are drawn uniform or random (``random_probabilities``): with uniform
ones a wrong weighting cancels.

Evidence: autograd through the enumeration against the structured operator; the structured operator against
OP_l built from its definition with closed-form K; the rank bound of that definition; the frozen-gating iterates.
Sanity only (true by construction): symmetry and PSD of OP_l, the alignment growth under power iteration.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from dualnet_ssl.checks import (assert_psd, check_frozen_gating_power_iteration, check_operator_structure,
                                check_simp_covariance)
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.distributions import (augmentation_only_feature, gaussian_augmented, random_probabilities,
                                       views_as_samples)
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.hltm import enumerate_leaves, make_hltm
from dualnet_ssl.losses import simple
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP, TreeMirrorNet
from dualnet_ssl.operators import expected_loss_neg_gradient, operator_from_definition, operator_times
from dualnet_ssl.sampled import check_sampled_error_rate, power_against_trace_error
from theorems.faults import shrunken_batches
from dualnet_ssl.seeding import derive_seed
from dualnet_ssl.thresholds import Z_SCORE_FALSE_ALARM
from dualnet_ssl.tolerances import tolerance
from theorems.strategies import PROBABILITIES, relu_or_leaky, seeds, small_mlp_widths

sigmas = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)


def _data(n_samples, n_augs, shape, sigma, seed, device, probs="uniform"):
    """``probs``: "uniform", "random" (samples and augmentations) or "random augmentations"."""
    data = gaussian_augmented(n_samples, n_augs, shape, sigma, seed=derive_seed(seed, "data"), device=device)
    if probs == "uniform":
        return data
    return random_probabilities(data, seed=derive_seed(seed, "probabilities"), samples=probs == "random")


def _case(widths, slope, seed, n_samples, n_augs, sigma, device, probs="uniform"):
    net = BiasFreeMLP(widths, seed=seed, negative_slope=slope, device=device)
    return net, _data(n_samples, n_augs, widths[0], sigma, seed, device, probs)


@given(widths=small_mlp_widths(), slope=relu_or_leaky, seed=seeds, n_samples=st.integers(2, 5),
       n_augs=st.integers(1, 3), sigma=sigmas, probs=PROBABILITIES)
def test_simp_gradient_is_twice_the_variance_operator(widths, slope, seed, n_samples, n_augs, sigma, probs, device,
                                                      repro):
    net, data = _case(widths, slope, seed, n_samples, n_augs, sigma, device, probs)
    context = repro(widths=widths, slope=slope, seed=seed, N=n_samples, M=n_augs, sigma=sigma, probs=probs)
    uniform_samples = _data(n_samples, n_augs, widths[0], sigma, seed, device,   # the N/(N-1) factor needs them
                            "uniform" if probs == "uniform" else "random augmentations")
    for name in net.layer_names():
        check_simp_covariance(net, name, data, context=context)
        check_simp_covariance(net, name, uniform_samples, exclude_self=True, context=context)


@given(widths=small_mlp_widths(), seed=seeds, n_negatives=st.integers(2, 3))
def test_simp_several_negatives(widths, seed, n_negatives, device, repro):
    net, data = _case(widths, 0.0, seed, 3, 2, 0.3, device, "random")
    for name in net.layer_names():
        check_simp_covariance(net, name, data, n_negatives=n_negatives,
                              context=repro(widths=widths, seed=seed, H=n_negatives, probs="random"))


@given(widths=small_mlp_widths(), slope=relu_or_leaky, seed=seeds, n_samples=st.integers(2, 5),
       n_augs=st.integers(1, 3), probs=PROBABILITIES)
def test_simp_operator_is_psd_with_bounded_rank(widths, slope, seed, n_samples, n_augs, probs, device, repro):
    net, data = _case(widths, slope, seed, n_samples, n_augs, 0.3, device, probs)
    for name in net.layer_names():
        check_operator_structure(net, name, data, context=repro(widths=widths, slope=slope, seed=seed, N=n_samples,
                                                                probs=probs))


def test_simp_rank_bound_is_attained(seed, device, repro):
    """A deep linear net has K_1(x) = J^T kron x with J constant, so rank V[Kbar_1] = rank(J) * rank(Cov x)
    = n_L (N-1) here: the bound (N-1) n_L is tight, and a looser one would be a weaker claim."""
    net, data = _case([6, 5, 4, 3], 1.0, seed, 4, 2, 0.3, device, "random")
    figures = check_operator_structure(net, "weights.0", data, context=repro(seed=seed)).details
    assert figures["rank"] == figures["rank_bound"] == 9, f"rank {figures} [{repro(seed=seed)}]"


@given(channels=st.lists(st.integers(1, 3), min_size=1, max_size=2), seed=seeds)
def test_simp_covariance_on_conv_net(channels, seed, device, repro):
    """K of the conv net is closed form (im2col patches kron J^T), so the operator check is not autograd vs autograd."""
    net = BiasFreeConvNet(1, 4, channels, 2, seed=seed, device=device)
    data = _data(3, 2, (1, 4, 4), 0.3, seed, device, "random")
    for name in net.layer_names():
        context = repro(arch=f"conv{channels}->maxpool->linear(2)", seed=seed, probs="random")
        check_simp_covariance(net, name, data, context=context)
        check_operator_structure(net, name, data, context=context)


@given(depth=st.integers(1, 2), hid=st.integers(1, 4), seed=seeds)
def test_simp_covariance_on_hltm_tree_network(depth, hid, seed, device, repro):
    """On the HLTM itself: the sample is z0 and p_aug(.|z0) is every leaf configuration, enumerated exactly.
    Depth <= 2 (4 leaves, 16 views per root value): the tuple enumeration grows as (2^leaves)^3."""
    net = TreeMirrorNet(depth, 2, hid, seed=seed, device=device)
    data = enumerate_leaves(make_hltm(depth, 2, 0.8, seed=derive_seed(seed, "tree"))).augmented_data(device=device)
    for name in net.layer_names():
        check_simp_covariance(net, name, data, context=repro(arch=f"tree(depth={depth}, c=2, hid={hid})", seed=seed))


def test_simp_augmentation_only_feature_gets_no_gradient(seed, device, repro):
    """A deep linear net (psi = identity), where K_1(x) = J^T kron x exactly: coordinate 0 varies only under
    augmentation, so its column of -dE/dW_1 is exactly 0; the operator of total view variance V[K]
    would amplify it (non-zero column), which shows the cancellation is not vacuous."""
    net = BiasFreeMLP([5, 6, 4, 3], seed=seed, negative_slope=1.0, device=device)
    data = augmentation_only_feature(4, 5, 1.0, seed=derive_seed(seed, "data"), device=device)
    context = repro(seed=seed, widths=net.widths, activation="identity")
    neg_grad, _ = expected_loss_neg_gradient(net, "weights.0", data, simple())
    column = neg_grad.reshape(6, 5)[:, 0]
    scale = float(neg_grad.norm())
    tol = tolerance(torch.float64, "gradient")
    assert_identity(column, torch.zeros_like(column), context=context, what="-dE/dW_1[:, 0] (augmentation-only)",
                    tol=type(tol)(tol.rtol, tol.atol + tol.rtol * scale, tol.reason + "; atol scaled by ||grad||"))
    total_variance_column = (2 * operator_times(net, "weights.0", views_as_samples(data))).reshape(6, 5)[:, 0]
    assert float(total_variance_column.norm()) > tol.atol + tol.rtol * scale, (
        f"the total-variance operator V[K] should act on the augmentation-only feature, but its column is "
        f"{float(total_variance_column.norm()):.3e} [{context}]")


def test_simp_frozen_gating_is_power_iteration(seed, device, repro):
    net, data = _case([6, 10, 8, 3], 0.0, seed, 5, 3, 0.3, device, "random")
    for name in net.layer_names():
        check_frozen_gating_power_iteration(net, name, data, alpha=0.05, steps=5, context=repro(seed=seed, layer=name))


def test_simp_sampled_batches_error_falls_as_inverse_sqrt_batch(seed, device, repro):
    net = BiasFreeMLP([8, 16, 8], seed=seed, device=device)
    data = _data(6, 2, 8, 0.3, seed, device, "random")
    result = check_sampled_error_rate(net, "weights.0", data, batch_sizes=(8, 32, 128), n_batches=8000,
                                      seed=derive_seed(seed, "batches"), context=repro(seed=seed)).details
    print(f"sampled L_simp gradient: E[B||g_B - g||^2]/tr(Sigma) by B = {result['ratio_by_batch']}, pooled "
          f"{result['pooled_ratio']:.4f} +- {result['pooled_stderr']:.4f}, power against a 5% error in tr(Sigma) "
          f"{result['power_at_5pct']:.4f}, log-log slope of RMS error = {result['loglog_slope']:.3f} (1/sqrt(B): -0.5)")
    # the stated power is P(|N(d, 1)| > z) for the smaller shift d = (1 - 1/1.05) / standard error (scipy's normal),
    # at this test's standard error and where the power is far from 1
    z = float(Z_SCORE_FALSE_ALARM)
    for stderr in (result["pooled_stderr"], 0.008, 0.012, 0.02):
        d = (1 - 1 / 1.05) / stderr
        assert abs(power_against_trace_error(stderr) - (norm.sf(z - d) + norm.cdf(-z - d))) <= 1e-9, stderr
    # the stated power, shown: batches that average 5% fewer tuples than they claim (a 5% error in tr(Sigma))
    with pytest.raises(IdentityViolation, match=r"\(pooled over B\), expected 1 within"):
        check_sampled_error_rate(net, "weights.0", data, batch_sizes=(8, 32, 128), n_batches=8000,
                                 seed=derive_seed(seed, "batches"), sampler=shrunken_batches, context=repro(seed=seed))


def test_simp_checks_are_sharp(seed, device, repro):
    """The table's tolerances are tight enough to matter: a Theorem 3 constant off by 1e-6 relative is rejected
    ("gradient" kind), and so is OP_l shifted by -1e-6 of its largest eigenvalue ("eigenvalue" kind)."""
    net, data = _case([6, 10, 8, 3], 0.0, seed, 4, 2, 0.3, device, "random")
    with pytest.raises(IdentityViolation, match=r"vs 2\.000002 V\[Kbar_l\] w_l"):
        check_simp_covariance(net, "weights.1", data, factor=2 * (1 + 1e-6), context=repro(seed=seed))
    op = operator_from_definition(net, "weights.1", data)
    shift = 1e-6 * float(torch.linalg.eigvalsh(op).max()) * torch.eye(op.shape[0], dtype=op.dtype, device=op.device)
    with pytest.raises(IdentityViolation, match="is not PSD"):
        assert_psd(op - shift, what="OP_l - 1e-6 lambda_max I", context=repro(seed=seed))
