"""Every HLTM checker can fail: each rejects an injected fault (docs/THEORY.md §8); the checkers of
theorems/test_hltm.py, theorems/test_hltm_model.py and theorems/test_hltm_mechanism.py included."""
import dataclasses
import types

import pytest
import torch

from dualnet_ssl import hltm
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.seeding import make_generator


def test_recovery_rejects_training_without_a_shared_root(hltm_suite_runs):
    """Positives with independent roots are pure noise: the recovery check must fail."""
    runs = hltm_suite_runs()[(0.8, False)]
    with pytest.raises(IdentityViolation, match="root-level best"):
        hltm.check_recovery(runs, context=hltm.describe_runs(runs))


def _recovery(levels: list) -> hltm.LatentRecovery:
    """A recovery whose per-level metric is ``levels`` (one latent per level, best |corr| = the value, ceiling
    0.95, so the root's fraction of the ceiling stays above the check's minimum)."""
    return hltm.LatentRecovery([torch.tensor([[v, 0.0]]) for v in levels], [torch.tensor([0.95])] * len(levels))


def test_recovery_reads_its_gain_at_the_root():
    """A root that does not move fails however much the level above the leaves rises: the gain is the root's."""
    runs = [types.SimpleNamespace(spec=hltm.TrainSpec(seed=s), initial=_recovery([0.9, 0.5, 0.3]),
                                  final=_recovery([0.9, 0.5, 0.6])) for s in range(4)]
    with pytest.raises(IdentityViolation, match="root-level best"):
        hltm.check_recovery(runs, context="root flat, lowest level rising")


def test_amplification_rejects_training_without_a_shared_root(hltm_suite_runs):
    runs = hltm_suite_runs()[(0.8, False)]
    with pytest.raises(IdentityViolation, match="explained by z0"):
        hltm.check_selectivity_amplified(runs, context=hltm.describe_runs(runs))


def test_paired_comparison_rejects_swapped_arms(hltm_suite_runs):
    better, worse = hltm_suite_runs()[(0.9, True)], hltm_suite_runs()[(0.5, True)]
    with pytest.raises(IdentityViolation, match="mean paired gap"):
        hltm.check_paired_improvement(worse, better, what="swapped", min_raw_gap=hltm.POLARITY_MIN_RAW_GAP,
                                      min_fraction_gap=hltm.POLARITY_MIN_FRACTION_GAP)


def test_latent_correlation_rejects_shuffled_latents(seed):
    """Latent samples whose node labels are shuffled within each level break the path-product law."""
    model = hltm.make_hltm(3, 2, 0.5, seed=seed)
    g = make_generator(seed)
    latents = model.sample_latents(20_000, g)
    shuffled = [z[:, torch.roll(torch.arange(z.shape[1]), 1)] for z in latents]
    with pytest.raises(IdentityViolation, match="path product"):
        hltm.check_latent_correlation(model, shuffled)


def flipped(model: hltm.HLTM, level: int, edges=slice(0, 1), factor: float = -1.0) -> hltm.HLTM:
    """A plain HLTM like ``model`` with the polarities of the given edges into ``level`` times ``factor``."""
    rhos = list(model.polarities)
    rhos[level] = rhos[level].clone()
    rhos[level][edges] *= factor
    return hltm.HLTM(model.depth, model.branching, tuple(rhos))


def test_transitions_reject_a_wrong_polarity(seed):
    model = hltm.make_hltm(3, 2, 0.5, seed=seed)
    with pytest.raises(IdentityViolation, match="z_child = z_parent"):
        hltm.check_transitions(model, flipped(model, 2).sample_latents(20_000, make_generator(seed)))


def test_enumeration_check_rejects_a_wrong_sampler(seed):
    model = hltm.make_hltm(2, 2, 0.5, seed=seed)
    with pytest.raises(IdentityViolation, match="p\\(x \\| z0\\)"):
        hltm.check_enumeration_matches_sampling(model, 20_000, seed=seed, sampler=flipped(model, 2))


class SquaredTreeNet(TreeMirrorNet):
    """Output f |f|: homogeneous of degree 2, not 1, in every layer, so Kbar^T w = 2 fbar, not fbar."""

    def forward(self, x, gates=None):
        out = super().forward(x, gates)
        return out * out.abs()


def test_exact_operator_check_rejects_a_network_outside_the_class(seed):
    model = hltm.make_hltm(2, 2, 0.8, seed=seed)
    with pytest.raises(IdentityViolation, match="Delta\\^T w"):
        hltm.check_exact_operator(SquaredTreeNet(2, 2, 3, seed=seed), model, alpha=0.1)


def test_exact_operator_check_rejects_a_wrong_operator_constant(seed, monkeypatch):
    """An operator product off by a constant (the factor 2 of Theorem 3 lost) breaks S' = (I + alpha/2 G) S."""
    true_times = hltm.checks.operator_times
    monkeypatch.setattr(hltm.checks, "operator_times", lambda *args, **kw: true_times(*args, **kw) / 2)
    model = hltm.make_hltm(2, 2, 0.8, seed=seed)
    with pytest.raises(IdentityViolation, match="frozen-gating step"):
        hltm.check_exact_operator(TreeMirrorNet(2, 2, 3, seed=seed), model, alpha=0.1)


class WrongDownwardPass(hltm.HLTM):
    """Belief propagation whose downward messages lose the sign of the first edge into level 1."""

    def upward_downward(self, x):
        log_lik, posts = super().upward_downward(x)
        return log_lik, posts[:1] + flipped(self, 1).upward_downward(x)[1][1:]


class WrongUpwardPass(hltm.HLTM):
    """Belief propagation whose upward messages weaken the leaf polarities by 10%."""

    def upward_downward(self, x):
        _, posts = super().upward_downward(x)
        return flipped(self, self.depth, slice(None), 0.9).upward_downward(x)[0], posts


def buggy(model: hltm.HLTM, kind: type) -> hltm.HLTM:
    return kind(model.depth, model.branching, model.polarities)


@pytest.mark.parametrize("bug, match", [(WrongDownwardPass, "E\\[z \\| x\\] at level 1"),
                                        (WrongUpwardPass, "p\\(x \\| z0\\), belief propagation")])
def test_belief_propagation_check_rejects_a_wrong_pass(bug, match, seed):
    model = hltm.make_hltm(3, 2, 0.7, seed=seed)
    with pytest.raises(IdentityViolation, match=match):
        hltm.check_belief_propagation(buggy(model, bug))


def test_exact_operator_check_rejects_a_wrong_upward_pass(seed):
    """The operator built on a wrong p(x | z0) no longer matches Delta from the brute-force joint."""
    model = buggy(hltm.make_hltm(2, 2, 0.8, seed=seed), WrongUpwardPass)
    with pytest.raises(IdentityViolation, match="1/4 Delta Delta\\^T"):
        hltm.check_exact_operator(TreeMirrorNet(2, 2, 3, seed=seed), model, alpha=0.1)


class InterleavedTreeNet(TreeMirrorNet):
    """Groups fed leaves j, j + n/c, ... instead of the contiguous block of their subtree (a reshape-order bug)."""

    def forward_cache(self, x, gates=None):
        order = torch.arange(self.n_leaves).reshape(self.branching, -1).T.flatten()
        return super().forward_cache(x[:, order], gates)


def test_wiring_check_rejects_interleaved_groups(seed):
    with pytest.raises(IdentityViolation, match="mis-wired"):
        hltm.check_tree_wiring(InterleavedTreeNet(3, 2, 4, seed=seed), seed=seed)


def test_wiring_check_rejects_a_group_blind_to_one_leaf(seed):
    """The converse: a group that ignores a leaf of its own subtree."""
    net = TreeMirrorNet(3, 2, 4, seed=seed)
    with torch.no_grad():
        net.weights[0][0, :, 0] = 0                      # level-2 group 0 no longer reads leaf 0
    with pytest.raises(IdentityViolation, match="level 2 group 0 sees leaves \\[1\\]"):
        hltm.check_tree_wiring(net, seed=seed)


def unweighted_mean_std(values, weights):
    """The fault of the issue: weighted spread about the UNweighted mean."""
    w = weights.reshape(-1, *([1] * (values.dim() - 1)))
    return (w * (values - values.mean(0)) ** 2).sum(0).sqrt()


def test_feature_correlation_check_rejects_an_unweighted_mean(seed, monkeypatch):
    monkeypatch.setattr(hltm.metrics, "weighted_std", unweighted_mean_std)
    model = hltm.make_hltm(3, 2, 0.8, seed=seed)
    with pytest.raises(IdentityViolation, match="metric vs brute-force joint"):
        hltm.check_feature_correlations(TreeMirrorNet(3, 2, 6, seed=seed), model)


def test_ceiling_check_rejects_a_wrong_level_below_the_root(seed):
    """Only the level-1 posteriors are wrong (from a model with weaker level-1 edges): the root's ceiling is right."""
    model = hltm.make_hltm(3, 2, 0.8, seed=seed)
    data, other = hltm.enumerate_leaves(model), hltm.enumerate_leaves(flipped(model, 1, slice(None), 0.5))
    wrong = dataclasses.replace(data, posterior=[data.posterior[0], other.posterior[1], data.posterior[2]])
    with pytest.raises(IdentityViolation, match="Bayes ceiling at level 1"):
        hltm.check_ceilings(model, wrong)


def test_level_check_rejects_untrained_runs():
    """Runs of zero steps (nothing learned): every level's gain is 0, below its threshold."""
    runs = hltm.train_many([dataclasses.replace(s, depth=3, steps=0) for s in hltm.headroom_specs("authors", (7, 8))])
    with pytest.raises(IdentityViolation, match="level 0: mean gain \\+0.000"):
        hltm.check_levels_rise(runs, min_mean_gains=hltm.HEADROOM_MIN_GAINS["authors"])
