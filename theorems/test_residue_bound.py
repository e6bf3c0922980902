"""Theorem 4's residue (docs/THEORY.md §7): its closed form over tuples, and its bound by the augmentation spread,
checked as an inequality.

The closed form (``residue_bound.residue_by_tuples``: dense closed-form K, the loss's closed-form weights, every
tuple enumerated) is compared with theta from ``operators.residue`` (autograd through the enumerated loss minus
the structured main term): two independent routes. The bound then follows by the triangle inequality; it is
checked on each case, and a case built to make it tight shows it is not loose by orders of magnitude.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dualnet_ssl import losses
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.distributions import gaussian_augmented, random_probabilities
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.operators import residue
from dualnet_ssl.residue_bound import check_residue_bound, residue_by_tuples
from dualnet_ssl.seeding import derive_seed
from dualnet_ssl.tolerances import tolerance
from theorems.strategies import relu_or_leaky, seeds, small_mlp_widths

LOSSES = {"triplet": lambda tau: losses.triplet(tau, margin=0.1), "infonce-H1": lambda tau: losses.infonce(tau)}
SLACK = tolerance(torch.float64, "gradient")


def _case(widths, slope, seed, sigma, probs):
    net = BiasFreeMLP(widths, seed=seed, negative_slope=slope)
    data = gaussian_augmented(3, 2, widths[0], sigma, seed=derive_seed(seed, "data"))
    if probs != "uniform":
        data = random_probabilities(data, seed=derive_seed(seed, "probabilities"))
    return net, data


@pytest.mark.parametrize("case", LOSSES, ids=list(LOSSES))
@given(widths=small_mlp_widths(), slope=relu_or_leaky, seed=seeds, sigma=st.sampled_from([0.1, 0.3, 1.0]),
       tau=st.floats(0.2, 5.0), probs=st.sampled_from(["uniform", "random"]))
def test_residue_closed_form_and_bound(case, widths, slope, seed, sigma, tau, probs, repro):
    net, data = _case(widths, slope, seed, sigma, probs)
    loss = LOSSES[case](tau)
    context = repro(widths=widths, slope=slope, seed=seed, sigma=sigma, tau=tau, probs=probs)
    for name in net.layer_names():
        by_tuples = residue_by_tuples(net, name, data, loss)
        theta = residue(net, name, data, loss, 1).theta
        assert_identity(by_tuples.theta, theta, kind="gradient", context=f"layer {name}, {context}",
                        what="theta_l by tuples (closed-form K and weights) vs -dE/dw - 2 OP w (autograd)")
        check_residue_bound(float(theta.norm()), by_tuples.bound, slack=SLACK, context=context.within(f"layer {name}"))


def test_bound_is_not_loose_on_a_case_built_for_it():
    """A 1-1 linear net, 2 samples x 2 views, where every term is a product of scalars: the tightest of 360 cases
    searched (seeds 0-39, sigma 0.3/1/3, tau 0.1/0.5/2) reaches 0.76 of the bound; this is one of them."""
    net = BiasFreeMLP([1, 1], seed=28)
    data = gaussian_augmented(2, 2, 1, 1.0, seed=128)
    loss = losses.triplet(2.0, margin=0.0)
    by_tuples = residue_by_tuples(net, "weights.0", data, loss)
    tightness = check_residue_bound(float(residue(net, "weights.0", data, loss, 1).theta.norm()), by_tuples.bound,
                                    slack=SLACK, context="tight case").measured
    assert tightness >= 0.5, f"||theta|| / bound = {tightness:.3f} on the case built to be tight (expected 0.76)"


def test_bound_rejects_a_residue_above_it(seed):
    with pytest.raises(IdentityViolation, match=r"exceeds its bound .* by the augmentation spread"):
        check_residue_bound(2.0, 1.0, slack=SLACK, context=f"seed {seed}")
    with pytest.raises(IdentityViolation, match=r"non-finite"):
        check_residue_bound(float("nan"), 1.0, slack=SLACK)


def test_closed_form_rejects_a_wrong_residue(seed):
    """The closed form against theta of another loss (tau off by 10%): the comparison must fail."""
    net, data = _case([3, 5, 2], 0.0, seed, 0.5, "uniform")
    by_tuples = residue_by_tuples(net, "weights.0", data, losses.triplet(0.5, margin=0.1))
    wrong = residue(net, "weights.0", data, losses.triplet(0.55, margin=0.1), 1).theta
    with pytest.raises(IdentityViolation, match=r"theta_l by tuples"):
        assert_identity(by_tuples.theta, wrong, kind="gradient", what="theta_l by tuples (closed-form K and "
                        "weights) vs -dE/dw - 2 OP w (autograd)", context=f"seed {seed}")
