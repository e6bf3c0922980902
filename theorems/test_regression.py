"""Regression-check mode on the suite's own subjects (docs/REGRESSION.md).

The installed plugin runs these same properties on *your* loss and network: ``pytest --ssl-loss
pkg.mod:factory``. Here they run on the suite's reference losses (L_nce, L_simp, L_tri as batch losses),
the example user package in examples/, and random bias-free ReLU MLPs, so every property is exercised
in this repository's CI. Every one of them must pass or be "not applicable" with its reason.
"""
import pytest

from dualnet_ssl import regression
from dualnet_ssl.regression.plugin import assert_result

LOSSES = [regression.builtin_loss(factory) for factory in
          (regression.reference_nt_xent, regression.reference_simple, regression.reference_triplet)]
LOSSES += [regression.load_loss("examples.mylosses:make_loss")]
NETS = [regression.NetSubject(regression.reference_mlp().name, regression.reference_mlp),
        regression.load_net("examples.mynets:make_net")]


def _ids(subjects):
    return [s.name for s in subjects]


@pytest.mark.parametrize("subject", LOSSES, ids=_ids(LOSSES))
@pytest.mark.parametrize("prop", regression.LOSS_PROPERTIES)
def test_loss_property(prop, subject, seed):
    """Pair structure, Theorem 2's balance and signs, the reference L_nce and float32 stability of the loss alone."""
    assert_result(regression.check_loss(subject, prop, seed))


@pytest.mark.parametrize("subject", NETS, ids=_ids(NETS))
@pytest.mark.parametrize("prop", regression.NET_PROPERTIES)
def test_network_property(prop, subject, seed):
    """The network is in the theorems' class; Theorem 1 and Theorem 3 (exact) hold on it, layer by layer."""
    assert_result(regression.check_network(subject, prop, seed))


@pytest.mark.parametrize("net", NETS, ids=_ids(NETS))
@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_covariance_form(loss, net, seed):
    """Theorems 1 and 3-4 on a batch: dL/dw_l = 1/2 sum_ij s_ij (K_i - K_j)(K_i - K_j)^T w_l, s from the probe."""
    assert_result(regression.check_covariance_form(loss, net, seed))


def test_covariance_form_catches_an_unbalanced_network_loss_pairing(seed, repro):
    """The covariance check can fail: a loss of |z| (not of pairwise distances) on a bias-free net."""
    norm_loss = regression.LossSubject("norm", lambda: regression.two_view(lambda z0, z1: (z0 ** 2).sum() + z1.sum()))
    result = regression.check_covariance_form(norm_loss, NETS[0], seed)
    assert result.status == "fail" and result.summary().startswith("covariance_form FAILED for norm"), \
        f"{result.summary()}; {repro()}"
