"""Regression-check mode: the theory's properties, probed on a loss and a network (docs/REGRESSION.md).

Without options these run on the suite's reference losses (L_nce, L_simp, L_tri as batch losses), the
example package in examples/ and a random bias-free ReLU MLP. Point them at your code with
``--ssl-loss pkg.mod:factory`` and ``--ssl-model pkg.mod:factory``; ``--ssl-report report.json`` writes
one record per property. Each property is defined in reference/probing.py and docs/REGRESSION.md.
"""
import pytest

from reference import probing


@pytest.mark.parametrize("prop", probing.LOSS_PROPERTIES)
def test_loss_property(prop, ssl_loss_subject, ssl_draw, seed, ssl_verdict):
    """Pair structure, Theorem 2's balance and signs, the reference L_nce and float32 stability of the loss alone."""
    ssl_verdict(probing.check_loss(ssl_loss_subject, prop, seed))


@pytest.mark.parametrize("prop", probing.NET_PROPERTIES)
def test_network_property(prop, ssl_net_subject, ssl_draw, seed, ssl_verdict):
    """The network is in the theorems' class; Theorem 1 and Theorem 3 (exact) hold on it, layer by layer."""
    ssl_verdict(probing.check_network(ssl_net_subject, prop, seed))


def test_covariance_form(ssl_loss_subject, ssl_net_subject, ssl_draw, seed, ssl_verdict):
    """Theorems 1 and 3-4 on a batch: dL/dw_l = 1/2 sum_ij s_ij (K_i - K_j)(K_i - K_j)^T w_l, s from the probe."""
    ssl_verdict(probing.check_covariance_form(ssl_loss_subject, ssl_net_subject, seed))
