"""HLTM model and network, exactly (docs/THEORY.md §8): belief propagation, tree wiring, the metric's
correlations and the Bayes ceiling at every level, each against the brute-force joint of all latents."""
import pytest
import torch
from hypothesis import given, strategies as st

from dualnet_ssl.compare import assert_identity

from dualnet_ssl import hltm
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.seeding import make_generator

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
    for name in net.layer_names():   # level_of names the level whose c^level groups the parameter feeds
        groups = dict(net.named_parameters())[name].shape[0]
        assert groups == branching ** net.level_of(name), (
            f"{name} feeds {groups} groups but level_of says level {net.level_of(name)} "
            f"[{repro(depth=depth, c=branching, hid=hid, seed=seed)}]")


@pytest.mark.parametrize("depth, branching, hid", [(3, 2, 6), (2, 3, 4)])
def test_metric_correlations_match_brute_force_joint(depth, branching, hid, seed, repro):
    """The metric's corr(f_k, z_mu), weighted by p(x), against the joint of all latents, every level (at init)."""
    model = hltm.make_hltm(depth, branching, 0.8, seed=seed)
    net = TreeMirrorNet(depth, branching, hid, seed=hltm.derive_seed(seed, "net"))
    context = repro(depth=depth, c=branching, hid=hid, seed=seed)
    hltm.check_feature_correlations(net, model, context=context)
    # the metric itself (mean over latents of the best |corr|, and of best / ceiling), from the joint alone
    recovery = hltm.latent_recovery(net, hltm.enumerate_leaves(model))
    _, p_x, posterior = hltm.brute_force_leaf_tables(model)
    for level, corr in enumerate(hltm.joint_unit_correlations(net, model)):
        first = model.node_index(level, 0)
        post = posterior[:, first:first + model.level_size(level)]
        p_one = p_x @ post
        ceiling = ((p_x @ (post - p_one) ** 2) / (p_one * (1 - p_one))).sqrt()
        best = corr.abs().max(-1).values
        assert_identity(torch.tensor(recovery.per_level()[level], dtype=torch.float64), best.mean(), context=context,
                        what=f"metric at level {level}: mean best |corr|, vs the brute-force joint")
        assert_identity(torch.tensor(recovery.fraction_of_ceiling()[level], dtype=torch.float64),
                        (best / ceiling).mean(), context=context,
                        what=f"metric at level {level}: mean best |corr| / ceiling, vs the brute-force joint")


@pytest.mark.parametrize("depth, branching", [(3, 2), (2, 3)])
@pytest.mark.parametrize("delta_lower", [0.3, 0.8])
def test_bayes_ceiling_every_level_matches_brute_force_joint(depth, branching, delta_lower, seed, repro):
    """sqrt(Var E[z_mu|x] / Var z_mu) at every level, from belief propagation, against the brute-force joint."""
    model = hltm.make_hltm(depth, branching, delta_lower, seed=seed)
    hltm.check_ceilings(model, hltm.enumerate_leaves(model),
                        context=repro(depth=depth, c=branching, delta_lower=delta_lower, seed=seed))


def test_sampler_draws_the_model(seed, repro):
    """Training pairs come from ``sample_latents``: its pairwise latent correlations match the path products of rho
    and its leaf frequencies given z0 match the enumerated p(x | z0) (belief propagation), within the Bonferroni
    z threshold (false-alarm rate 6.3e-5 per family)."""
    model = hltm.make_hltm(3, 2, 0.5, seed=seed)
    context = repro(depth=3, c=2, delta_lower=0.5, seed=seed)
    hltm.check_latent_correlation(model, model.sample_latents(50_000, make_generator(seed)), context=context)
    hltm.check_enumeration_matches_sampling(model, 50_000, seed=hltm.derive_seed(seed, "sampler"), context=context)
