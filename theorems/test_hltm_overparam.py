"""HLTM over-parameterisation (docs/THEORY.md §8, "Over-parameterisation"): the chance that some unit of a group of
|N| starts selective to its latent grows as 1 - (1 - p)^|N|, p measured on separate draws of single units."""
import functools

import pytest
import torch

from dualnet_ssl import hltm
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.hltm import overparam
from dualnet_ssl.hltm.lower_layers import group_inputs
from dualnet_ssl.networks import TreeMirrorNet

LAW_SEEDS = hltm.SUITE_SEEDS[:3]


def groups_of(seed, depth=3, branching=2, hid=10, delta_lower=0.8):
    """Every level's first group: its input moments, layers below as initialised from the seed."""
    model = hltm.make_hltm(depth, branching, delta_lower, seed=seed)
    net = TreeMirrorNet(depth, branching, hid, seed=hltm.derive_seed(seed, "net"))
    data = hltm.enumerate_leaves(model)
    return [(level, overparam.group_moments(net, data, level)) for level in range(depth)], net, data


@functools.lru_cache(maxsize=1)
def law_measurements():
    return tuple(overparam.measure_overparam(moments, seed=hltm.derive_seed(seed, f"units {level}"))
            for seed in LAW_SEEDS for level, moments in groups_of(seed)[0])


def test_unit_selectivity_closed_form_matches_the_metric(seed, repro):
    """|w . Cov(h, z)| / (1/2 sqrt(w^T V[h] w)) equals the metric's |corr(f_k, z)| on the enumerated inputs."""
    moments, net, data = groups_of(seed)
    for level, m in moments:
        units = overparam.draw_units(7, m.fan_in, seed=hltm.derive_seed(seed, f"probe {level}"))
        f = group_inputs(net, data.x, level)[:, 0] @ units.T
        metric = hltm.unit_correlations(f[:, None, :], data.posterior[level][:, :1], data.weights)[0].abs()
        assert_identity(overparam.unit_selectivities(m, units), metric, context=repro(level=level, seed=seed),
                        what="closed-form |corr(w . h, z)| vs the metric's unit correlations")


def test_some_unit_selective_grows_as_one_minus_one_minus_p_to_the_n(repro):
    """Per level of a depth-3 tree and each of 3 seeds, |N| = 1 .. 32: the fraction of 2000 fresh groups with some
    unit above the threshold (the 90% quantile of a calibration draw) against 1 - (1 - p)^|N|, within the family
    z threshold (binomial errors of the fraction and of p)."""
    overparam.check_overparam_law(law_measurements(), context=repro(seeds=LAW_SEEDS, depth=3, hid=10))


@pytest.mark.parametrize("law, name", [(lambda p, n: p * n, "p |N| (the union bound)"),
                                       (lambda p, n: p ** n, "p^|N| (every unit selective)")],
                         ids=["union-bound", "every-unit"])
def test_law_check_rejects_a_wrong_law(law, name):
    with pytest.raises(IdentityViolation, match="P\\(some unit of \\|N\\| selective\\) vs p"):
        overparam.check_overparam_law(law_measurements(), law=law, law_name=name)


def test_law_check_rejects_p_from_correlated_units():
    """A group whose units all copy one draw: the chance stays p at every |N|, which the law rejects."""
    true = overparam.measure_overparam
    m = true(groups_of(LAW_SEEDS[0])[0][1][1], seed=3)
    copied = overparam.OverparamMeasurement(m.threshold, m.p, m.n_units, m.sizes, (m.some_selective[0],) * len(m.sizes),
                                            m.n_groups)
    with pytest.raises(IdentityViolation, match="1 - \\(1 - p\\)\\^\\|N\\|"):
        overparam.check_overparam_law([copied])


def test_bad_input_is_refused():
    _, net, data = groups_of(0)
    with pytest.raises(BadInput, match="no group"):
        overparam.group_moments(net, data, 5)
    with pytest.raises(BadInput, match="quantile"):
        overparam.measure_overparam(overparam.GroupMoments(torch.ones(2, dtype=torch.float64),
                                                           torch.eye(2, dtype=torch.float64)), seed=0, quantile=1.5)
