"""Theorems 3 and 4 on real images: scikit-learn's digits with real augmentations (docs/DIGITS.md).

Exact: N real digits x M real augmentations (translation, rotation, noise, erasing at strength s), drawn
once from the seed, are an exact discrete distribution; Theorem 3 (-dE[L_simp]/dw = 2 V[Kbar] w, PSD, rank
<= (N-1) n_L) and Theorem 4's split hold on it to float64 precision, on a bias-free MLP and a bias-free
conv + max-pool net. Measured: ||theta|| / ||2 OP w|| against s, and (slow) minibatch SimCLR training.
"""
import functools

import pytest

pytest.importorskip("sklearn", reason='the digits tests need scikit-learn: pip install -e ".[digits]"')

from dualnet_ssl import losses, thresholds  # noqa: E402
from dualnet_ssl.checks import (check_main_term, check_operator_structure, check_residue_ratio_falls,  # noqa: E402
                                check_residue_zero, check_simp_covariance)
from dualnet_ssl.digits.checks import check_claim, run_figures  # noqa: E402
from dualnet_ssl.digits.exact import empirical_distribution, strength_sweep  # noqa: E402
from dualnet_ssl.digits.training import TrainSpec, train_run  # noqa: E402
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP  # noqa: E402
from dualnet_ssl.seeding import derive_seed  # noqa: E402

NETS = {"mlp": lambda seed: BiasFreeMLP([64, 8, 6, 3], seed=seed),
        "conv": lambda seed: BiasFreeConvNet(1, 8, [2, 3], 3, seed=seed)}
LOSSES = {"triplet": (losses.triplet(0.5, margin=0.1), 1), "infonce-H2": (losses.infonce(0.5), 2)}


def _case(arch, seed, s):
    net = NETS[arch](derive_seed(seed, "net"))
    return net, empirical_distribution(4, 3, s, seed=seed, image_shape=arch == "conv")


@pytest.mark.parametrize("arch", NETS)
def test_digits_simp_gradient_is_twice_the_variance_operator(arch, seed, repro):
    net, data = _case(arch, seed, 1.0)
    for name in net.layer_names():
        context = repro(arch=arch, layer=name, seed=seed, N=4, M=3, s=1.0)
        check_simp_covariance(net, name, data, context=context)
        check_simp_covariance(net, name, data, exclude_self=True, context=context)
        check_operator_structure(net, name, data, context=context)


@pytest.mark.parametrize("case", LOSSES)
@pytest.mark.parametrize("arch", NETS)
def test_digits_theorem4_split(arch, case, seed, repro):
    """Main term PSD with the loss's pair mass; theta = 0 exactly without augmentation and for L_simp."""
    loss, n_negatives = LOSSES[case]
    net, data = _case(arch, seed, 1.0)
    clean = _case(arch, seed, 0.0)[1]
    for name in net.layer_names():
        context = repro(arch=arch, case=case, layer=name, seed=seed)
        check_main_term(net, name, data, loss, n_negatives=n_negatives, context=context)
        check_residue_zero(net, name, clean, loss, n_negatives=n_negatives, context=context)
        check_residue_zero(net, name, data, losses.simple(), n_negatives=n_negatives, context=context)


SWEEP = {"mlp": ("weights.1", thresholds.DIGITS_MLP_EXPONENT_LOW, thresholds.DIGITS_MLP_EXPONENT_HIGH),
         "conv": ("convs.1", thresholds.DIGITS_CONV_EXPONENT_LOW, thresholds.DIGITS_CONV_EXPONENT_HIGH)}


@pytest.mark.parametrize("arch", SWEEP)
def test_digits_residue_ratio_rises_with_augmentation_strength(arch, seed, repro):
    """||theta|| / ||2 OP w|| over s in DIGITS_STRENGTHS rises strictly, exponent in the measured range
    (thresholds.py, "digits study": measured on seeds 0-9, this test's seed is the test id's hash)."""
    name, low, high = SWEEP[arch]
    make = {"mlp": lambda s: BiasFreeMLP([64, 16, 12, 4], seed=s),
            "conv": lambda s: BiasFreeConvNet(1, 8, [3, 4], 3, seed=s)}[arch]
    for case, (loss, n_negatives) in {"triplet": (losses.triplet(0.5, margin=0.1), 1),
                                      "infonce-H1": (losses.infonce(0.5), 1)}.items():
        result = strength_sweep(make, name, loss, thresholds.DIGITS_STRENGTHS, [seed], n_samples=5,
                                n_augmentations=3, n_negatives=n_negatives, image_shape=arch == "conv")
        sweep = dict(result["sweeps"][0], sigmas=list(thresholds.DIGITS_STRENGTHS))
        print(f"{arch} {case}: ratios {[f'{r:.2e}' for r in sweep['ratios']]}, exponent {sweep['exponent']:.2f}")
        check_residue_ratio_falls(sweep, (float(low), float(high)), context=repro(arch=arch, case=case, seed=seed))


# ------------------------------------------------------------------ minibatch SimCLR training (slow)
# Claims of the digits study, asserted on seeds 3 and 4; the thresholds were set on seeds 0-2 (thresholds.py).
HELD_OUT_SEEDS = (3, 4)


@functools.lru_cache(maxsize=None)
def _held_out_figures(loss: str) -> dict:
    """seed -> run_figures for the default TrainSpec (MLP 64-256-256-64, 1000 steps); cached across tests."""
    figures = {s: run_figures(train_run(TrainSpec(loss=loss, seed=s))) for s in HELD_OUT_SEEDS}
    for s, f in figures.items():
        print(f"{loss} seed {s}: " + ", ".join(f"{k} {v:.3f}" for k, v in f.items()))
    return figures


def _per_seed(loss, figure):
    return {s: f[figure] for s, f in _held_out_figures(loss).items()}


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_digits_training_raises_top_layer_probe_and_keeps_knn(loss, repro):
    """Prototype: 5-shot probe 0.75 -> 0.87 at the top layer, kNN flat near 0.97. Held (seeds 0-2: +0.07 to +0.14)."""
    context = repro(loss=loss, seeds=HELD_OUT_SEEDS)
    check_claim("contrastive training raises the top-layer 5-shot probe", "probe_gain output",
                _per_seed(loss, "probe_gain output"), thresholds.DIGITS_MIN_PROBE_GAIN, context=context)
    check_claim("kNN stays near its pixel level", "knn_change output", _per_seed(loss, "knn_change output"),
                thresholds.DIGITS_MIN_KNN_CHANGE, context=context)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "triplet", "maincov"])
def test_digits_training_shrinks_augmentation_spread(loss, repro):
    check_claim("E[r+]/E[r-] falls during training", "spread_drop", _per_seed(loss, "spread_drop"),
                thresholds.DIGITS_MIN_SPREAD_DROP, context=repro(loss=loss, seeds=HELD_OUT_SEEDS))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_digits_residue_does_not_shrink_during_training(loss, repro):
    """The paper's claim that theta shrinks as the net becomes invariant does NOT hold here: while r+/r- falls
    ~2.9x, ||theta|| falls at most 1.84x (L_tri) and grows on most L_nce layers (0.44-1.14x), and the ratio
    ||theta|| / ||2 OP w|| rises from 0.69-1.46 to 1.51-3.89 (seeds 0-2). Asserted in the form that holds."""
    context = repro(loss=loss, seeds=HELD_OUT_SEEDS)
    for layer in ("weights.0", "weights.1", "weights.2"):
        check_claim("the residue ends at least as large as the main term", f"final_ratio {layer}",
                    _per_seed(loss, f"final_ratio {layer}"), thresholds.DIGITS_MIN_FINAL_RATIO, context=context)
        check_claim("the absolute residue does not shrink much", f"theta_drop {layer}",
                    _per_seed(loss, f"theta_drop {layer}"), thresholds.DIGITS_MAX_THETA_DROP, above=False,
                    context=context)


@pytest.mark.slow
def test_digits_simp_collapses_the_top_layer(repro):
    """Prototype: L_simp (normalised outputs) took kNN 0.97 -> 0.75. On raw outputs it is worse: 0.96 -> 0.35."""
    check_claim("L_simp lowers top-layer kNN", "knn_change output", _per_seed("simp", "knn_change output"),
                thresholds.DIGITS_MAX_SIMP_KNN_CHANGE, above=False, context=repro(loss="simp", seeds=HELD_OUT_SEEDS))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "triplet", "maincov", "simp"])
def test_digits_selectivity_that_survives_augmentation_grows(loss, repro):
    check_claim("across/within variance of hidden units grows", "unit_ratio_gain hidden 2",
                _per_seed(loss, "unit_ratio_gain hidden 2"), thresholds.DIGITS_MIN_UNIT_RATIO_GAIN,
                context=repro(loss=loss, seeds=HELD_OUT_SEEDS))
