"""HLTM model and network, exactly (docs/THEORY.md §8): belief propagation, tree wiring, the metric's
correlations and the Bayes ceiling at every level, each against the brute-force joint of all latents."""
import pytest
from hypothesis import given, strategies as st

from dualnet_ssl import hltm
from dualnet_ssl.networks import TreeMirrorNet

SMALL_TREES = [(1, 2), (2, 2), (3, 2), (1, 3), (2, 3), (1, 4)]   # (depth, branching): <= 20 nodes, brute force


@given(tree=st.sampled_from(SMALL_TREES), delta_lower=st.floats(0.0, 0.99), tree_seed=st.integers(0, 2 ** 31 - 1))
def test_belief_propagation_matches_brute_force_joint(tree, delta_lower, tree_seed):
    """p(x | z0) and E[z_mu | x] of every latent, by the upward-downward pass, equal the brute-force joint's."""
    model = hltm.make_hltm(*tree, delta_lower, seed=tree_seed)
    hltm.check_belief_propagation(model, context=f"delta_lower={delta_lower}, seed={tree_seed}")


@pytest.mark.parametrize("depth, branching, hid", [(3, 2, 4), (2, 3, 3), (4, 2, 2)])
def test_tree_net_groups_see_exactly_their_subtree(depth, branching, hid, seed, repro):
    """Each group's pre-activation moves with the leaves of its own subtree and with no other leaf."""
    net = TreeMirrorNet(depth, branching, hid, seed=seed)
    hltm.check_tree_wiring(net, seed=seed, context=repro(depth=depth, c=branching, hid=hid, seed=seed))


@pytest.mark.parametrize("depth, branching, hid", [(3, 2, 6), (2, 3, 4)])
def test_metric_correlations_match_brute_force_joint(depth, branching, hid, seed, repro):
    """The metric's corr(f_k, z_mu), weighted by p(x), against the joint of all latents, every level (at init)."""
    model = hltm.make_hltm(depth, branching, 0.8, seed=seed)
    net = TreeMirrorNet(depth, branching, hid, seed=hltm.derive_seed(seed, "net"))
    hltm.check_feature_correlations(net, model, context=repro(depth=depth, c=branching, hid=hid, seed=seed))


@pytest.mark.parametrize("depth, branching", [(3, 2), (2, 3)])
@pytest.mark.parametrize("delta_lower", [0.3, 0.8])
def test_bayes_ceiling_every_level_matches_brute_force_joint(depth, branching, delta_lower, seed, repro):
    """sqrt(Var E[z_mu|x] / Var z_mu) at every level, from belief propagation, against the brute-force joint."""
    model = hltm.make_hltm(depth, branching, delta_lower, seed=seed)
    hltm.check_ceilings(model, hltm.enumerate_leaves(model),
                        context=repro(depth=depth, c=branching, delta_lower=delta_lower, seed=seed))
