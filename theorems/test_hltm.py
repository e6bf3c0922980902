"""HLTM (docs/THEORY.md §8): the exact covariance operator on the latent tree, and latent recovery by InfoNCE.

The model and network themselves (belief propagation, wiring, metric, ceiling): test_hltm_model.py."""
import pytest

from dualnet_ssl import hltm
from dualnet_ssl.networks import TreeMirrorNet

EXACT_CASES = [(3, 2, 4), (2, 3, 3)]   # (depth, branching, hid): 8 and 9 leaves, enumerated in full


@pytest.mark.parametrize("depth, branching, hid", EXACT_CASES)
def test_exact_operator_step_amplifies_selectivity(depth, branching, hid, seed, repro):
    """OP (belief propagation) = 1/4 Delta Delta^T (Delta from the brute-force joint), Delta^T w = S, and one
    frozen-gating step is power iteration on S. Symmetry, PSD, rank <= n_L and the spectrum are sanity only."""
    model = hltm.make_hltm(depth, branching, 0.8, seed=seed)
    net = TreeMirrorNet(depth, branching, hid, seed=hltm.derive_seed(seed, "net"))
    hltm.check_exact_operator(net, model, alpha=0.1, context=repro(depth=depth, c=branching, hid=hid, seed=seed))


def test_latent_recovery(hltm_suite_runs, repro):
    """Default case over SUITE_SEEDS: root-level metric rises on average, no level falls beyond noise, and the
    root level ends near its Bayes ceiling (thresholds and their measurements: dualnet_ssl.thresholds)."""
    runs = hltm_suite_runs()[(0.8, True)]
    hltm.check_recovery(runs, context=repro(case=hltm.describe_runs(runs)))


@pytest.mark.slow
def test_latent_recovery_official_settings(device, repro):
    """docs/THEORY.md §8's official run: depth 5, binary, delta_lower 0.8, hid 10, tau 0.1, lr 0.1, batch 128."""
    runs = hltm.train_many([hltm.TrainSpec(depth=5, steps=hltm.OFFICIAL_STEPS, seed=s)
                            for s in hltm.SUITE_SEEDS[:hltm.OFFICIAL_SEEDS]], device=device)
    hltm.check_recovery(runs, min_mean_root_fraction=hltm.OFFICIAL_MIN_MEAN_ROOT_FRACTION,
                        context=repro(case=hltm.describe_runs(runs)))
