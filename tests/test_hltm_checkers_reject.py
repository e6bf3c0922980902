"""Every HLTM checker can fail: each rejects an injected fault (THEORY.md §8); the checkers of
theorems/test_hltm.py and theorems/test_hltm_mechanism.py (amplification, paired comparisons) included."""
import dataclasses

import pytest
import torch

from dualnet_ssl import hltm
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.seeding import make_generator


def test_recovery_rejects_training_without_a_shared_root():
    """Positives with independent roots are pure noise: the recovery check must fail."""
    runs = hltm.suite_runs()[(0.8, False)]
    with pytest.raises(IdentityViolation, match="root-level best"):
        hltm.check_recovery(runs, context=hltm.describe_runs(runs))


def test_amplification_rejects_training_without_a_shared_root():
    runs = hltm.suite_runs()[(0.8, False)]
    with pytest.raises(IdentityViolation, match="explained by z0"):
        hltm.check_selectivity_amplified(runs, context=hltm.describe_runs(runs))


def test_paired_comparison_rejects_swapped_arms():
    better, worse = hltm.suite_runs()[(0.9, True)], hltm.suite_runs()[(0.5, True)]
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


def flipped(model: hltm.HLTM, level: int) -> hltm.HLTM:
    """The model with the polarity of the first edge into ``level`` negated."""
    rhos = list(model.polarities)
    rhos[level] = rhos[level].clone()
    rhos[level][0] = -rhos[level][0]
    return dataclasses.replace(model, polarities=tuple(rhos))


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
    true_times = hltm.operator_times
    monkeypatch.setattr(hltm, "operator_times", lambda *args, **kw: true_times(*args, **kw) / 2)
    model = hltm.make_hltm(2, 2, 0.8, seed=seed)
    with pytest.raises(IdentityViolation, match="frozen-gating step"):
        hltm.check_exact_operator(TreeMirrorNet(2, 2, 3, seed=seed), model, alpha=0.1)
