"""Theorems 3 and 4 on real images: scikit-learn's digits with real augmentations (docs/DIGITS.md).

Exact: N real digits x M real augmentations (translation, rotation, noise, erasing at strength s), drawn
once from the seed, are an exact discrete distribution; Theorem 3 (-dE[L_simp]/dw = 2 V[Kbar] w, PSD, rank
<= (N-1) n_L) and Theorem 4's split hold on it to float64 precision, on a bias-free MLP and a bias-free
conv + max-pool net. Measured: ||theta|| / ||2 OP w|| against s, and (slow) minibatch SimCLR training.
"""
import dataclasses
import functools

import pytest
import torch

pytest.importorskip("sklearn", reason='the digits tests need scikit-learn: pip install -e ".[digits]"')

from dualnet_ssl import losses, thresholds  # noqa: E402
from dualnet_ssl.checks import (check_main_term, check_operator_structure, check_residue_ratio_falls,  # noqa: E402
                                check_residue_zero, check_simp_covariance)
from dualnet_ssl.digits.checks import check_claim, check_unit_output_split, run_figures  # noqa: E402
from dualnet_ssl.digits.data import MAX_ANGLE_DEG, augment, draw_augmentations, load_digits  # noqa: E402
from dualnet_ssl.digits.exact import empirical_distribution, strength_sweep  # noqa: E402
from dualnet_ssl.digits.metrics import knn_accuracy, unit_variances  # noqa: E402
from dualnet_ssl.digits.training import RunResult, Tracker, TrainSpec, train_run  # noqa: E402
from dualnet_ssl.distributions import DiscreteAugmentedData, view_outputs  # noqa: E402
from dualnet_ssl.errors import BadInput, IdentityViolation  # noqa: E402
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP  # noqa: E402
from dualnet_ssl.operators import residue  # noqa: E402
from dualnet_ssl.seeding import derive_seed, make_generator  # noqa: E402
from dualnet_ssl.thresholds import Threshold  # noqa: E402
from dualnet_ssl.tolerances import tolerance  # noqa: E402

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


# ------------------------------------------------------------------ augmentations, metrics, claims: known cases

@pytest.mark.parametrize("quarter_turns", [1, -1])
def test_quarter_turn_rotation_is_torch_rot90(quarter_turns, seed, repro):
    """A +-90 degree rotation (angle draw 90 / MAX_ANGLE_DEG at s = 1, no shift, noise or erasing) lands every pixel
    on the grid, so the bilinear warp must equal torch.rot90 exactly: output (i, j) reads source (j, 7 - i)."""
    images = load_digits().images[:6]
    draw = draw_augmentations(6, make_generator(seed))
    turn = dataclasses.replace(draw, shift=torch.zeros(6, 2), angle=torch.full((6,), quarter_turns * 90 / MAX_ANGLE_DEG),
                               noise=torch.zeros(6, 8, 8), erase_mask=torch.zeros(6, 8, 8))
    got, want = augment(images, turn, 1.0, 1.0), torch.rot90(images, quarter_turns, dims=(1, 2))
    worst = float((got - want).abs().max())
    assert worst < 1e-12, f"rotation by {quarter_turns * 90} deg is off torch.rot90 by {worst:.3g} [{repro(seed=seed)}]"


def test_knn_votes_by_cosine_not_by_distance_or_dot_product(repro):
    """Class 0 lies along the test point's direction but is short; class 1 is 31 degrees off but nearer in Euclidean
    distance (1.58 vs 2.9) and in dot product (7.5 vs 0.3): only cosine similarity picks class 0."""
    train = torch.tensor([[0.1, 0.0]] * 5 + [[2.5, 1.5]] * 5)
    labels = torch.tensor([0] * 5 + [1] * 5)
    accuracy = knn_accuracy(train, labels, torch.tensor([[3.0, 0.0]]), torch.tensor([0]))
    assert accuracy == 1.0, f"cosine 5-NN of [3, 0] should be class 0, accuracy {accuracy} [{repro()}]"


def test_unit_variances_on_a_hand_computed_case(repro):
    """One hidden unit equal to the (positive) input. Sample 0 (p 1/4) has views 1 and 3, sample 1 (p 3/4) views 5
    and 5, each view with q 1/2: augmentation means 2 and 5, within = 1/4 * 1 = 1/4; the p-weighted mean is 4.25,
    across = 1/4 * 2.25^2 + 3/4 * 0.75^2 = 1.6875. Ratio 6.75, across share 1.6875 / 1.9375."""
    net = BiasFreeMLP([1, 1, 1], seed=0)
    with torch.no_grad():
        for w in net.weights:
            w.fill_(1.0)
    data = DiscreteAugmentedData(torch.tensor([[[1.0], [3.0]], [[5.0], [5.0]]], dtype=torch.float64),
                                 torch.full((2, 2), 0.5, dtype=torch.float64),
                                 torch.tensor([0.25, 0.75], dtype=torch.float64))
    (got,) = unit_variances(net, data)
    want = {"median_ratio": 6.75, "across_share": 1.6875 / 1.9375, "live_units": 1}
    assert got == pytest.approx(want, rel=1e-12), f"unit_variances {got}, by hand {want} [{repro()}]"


def test_claim_checker_holds_upper_bounds_as_upper_bounds(repro):
    limit = Threshold(2.0, "made up", "none", "test")
    check_claim("ratio stays low", "final_ratio", {3: 1.5, 4: 2.0}, limit, above=False, context=repro())
    with pytest.raises(IdentityViolation, match=r"'ratio stays low' does not hold: final_ratio must be <= 2.*4: 2.5"):
        check_claim("ratio stays low", "final_ratio", {3: 1.5, 4: 2.5}, limit, above=False, context=repro())
    with pytest.raises(IdentityViolation, match="must be <= 2"):
        check_claim("ratio stays low", "final_ratio", {3: float("nan")}, limit, above=False, context=repro())


def _run(spread):
    """A two-record run of one weight layer and one hidden layer with the given E[r+]/E[r-] series."""
    return RunResult(TrainSpec(), ["weights.0"], ["output"], steps=[0, 1000], theta_norm=[[4.0], [1.0]],
                     main_norm=[[2.0], [2.0]], spread=spread, unit_ratio=[[1.0], [3.0]],
                     knn={"init": [0.9], "final": [0.8]}, probe={"init": [0.5], "final": [0.75]}, final_loss=0.1)


def test_run_figures_and_a_spread_that_grows_is_rejected(repro):
    """Drops are first / last: a spread 0.8 -> 0.2 fell 4x; one that grows 0.2 -> 0.8 fell 0.25x and fails the claim."""
    figures = run_figures(_run([0.8, 0.5, 0.2]))
    assert figures == pytest.approx({"spread_drop": 4.0, "final_loss": 0.1, "probe_gain output": 0.25,
                                     "knn_change output": -0.1, "probe_final output": 0.75,
                                     "theta_drop weights.0": 4.0, "final_ratio weights.0": 0.5,
                                     "ratio_drop weights.0": 4.0,
                                     "unit_ratio_gain hidden 1": 3.0}, rel=1e-12), f"{figures} [{repro()}]"
    grows = run_figures(_run([0.2, 0.5, 0.8]))["spread_drop"]
    with pytest.raises(IdentityViolation, match=r"spread_drop must be >= .*seed 0: 0.25"):
        check_claim("E[r+]/E[r-] falls during training", "spread_drop", {0: grows}, thresholds.DIGITS_MIN_SPREAD_DROP,
                    context=repro())


def test_covariance_only_loss_with_unaugmented_weights_by_hand(seed, repro):
    """maincov_clean: W_ij = 1/2 (beta_i(j) + beta_j(i)), beta_i(j) = e^{-r_ij/tau} / (1 + sum_k e^{-r_ik/tau}) on the
    un-augmented outputs (positive distance 0), and the loss (1/B) sum_ij W_ij (r_+(i) - rbar_ij), rbar_ij the mean of
    the four view-pair distances; W is a constant of the views (detached), so it carries no augmentation."""
    from dualnet_ssl.compare import assert_identity
    from dualnet_ssl.digits.training import clean_pair_weights, two_view_loss
    g = make_generator(seed)
    b, tau = 4, 0.5
    z1, z2, clean = (torch.randn(b, 3, generator=g, dtype=torch.float64) for _ in range(3))
    r = lambda u, v: 0.5 * ((u - v) ** 2).sum()   # noqa: E731
    beta = torch.zeros(b, b, dtype=torch.float64)
    for i in range(b):
        z_i = 1 + sum(torch.exp(-r(clean[i], clean[k]) / tau) for k in range(b) if k != i)
        for j in range(b):
            if j != i:
                beta[i, j] = torch.exp(-r(clean[i], clean[j]) / tau) / z_i
    weights = 0.5 * (beta + beta.T)
    assert_identity(clean_pair_weights(clean, tau), weights, what="maincov_clean pair weights", context=repro())
    value = sum(weights[i, j] * (r(z1[i], z2[i]) - (r(z1[i], z1[j]) + r(z1[i], z2[j]) + r(z2[i], z1[j])
                                                    + r(z2[i], z2[j])) / 4) for i in range(b) for j in range(b)) / b
    assert_identity(two_view_loss(z1, z2, "maincov_clean", tau, clean), value, what="maincov_clean loss",
                    context=repro())
    with pytest.raises(BadInput, match="un-augmented outputs"):
        two_view_loss(z1, z2, "maincov_clean", tau)


# ------------------------------------------------------------------ normalised runs: the split at unit output norm
TINY_NORMALISED = dict(widths=(64, 8, 6, 3), normalise=True, n_test=40, exact_samples=4, exact_augmentations=3,
                       spread_samples=12, spread_augmentations=3)


def _net_with_no_dead_output(widths, seed, data):
    """The first tiny float32 MLP drawn from ``seed`` (redrawn deterministically) whose output is non-zero on every
    view of ``data``: with 3 output units, all of them off for some view happens on about 1 seed in 5, and a zero
    output has no normalised direction (the record refuses it, see the next test)."""
    for attempt in range(20):
        net = BiasFreeMLP(widths, seed=derive_seed(seed, "net" if attempt == 0 else f"net {attempt}"),
                          dtype=torch.float32)
        with torch.no_grad():
            if all(bool((view_outputs(net.double(), d).norm(dim=-1) > 0).all()) for d in data):
                return net.float()
    raise AssertionError(f"20 draws from seed {seed} all had a dead output")


def test_digits_normalised_record_refuses_a_zero_output(seed):
    """A view whose output is exactly 0 has no normalised direction: the record says so (BadInput), never NaN. A
    blank evaluation view does it (a bias-free net maps 0 to 0), while the other views keep the mean norm positive."""
    spec = TrainSpec(loss="infonce", seed=seed, **TINY_NORMALISED)
    images = torch.randperm(len(load_digits().labels), generator=make_generator(derive_seed(seed, "split")))
    tracker = Tracker(spec, images[40:], images[:40])
    views = tracker.views.views.clone()
    views[0, 0] = 0.0
    tracker.views = dataclasses.replace(tracker.views, views=views)
    net = _net_with_no_dead_output(spec.widths, seed, [tracker.exact])
    with pytest.raises(BadInput, match="output is exactly 0"):
        tracker.record(net, 0, RunResult(spec, net.layer_names(), []))


def _tiny_record(loss, seed, scale=1.0):
    """One Tracker.record of a normalised run at a tiny float32 MLP whose last layer is multiplied by ``scale``."""
    spec = TrainSpec(loss=loss, seed=seed, **TINY_NORMALISED)
    images = torch.randperm(len(load_digits().labels), generator=make_generator(derive_seed(seed, "split")))
    tracker = Tracker(spec, images[40:], images[:40])
    net = _net_with_no_dead_output(spec.widths, seed, [tracker.views, tracker.exact])
    with torch.no_grad():
        net.weights[-1].mul_(scale)
    result = RunResult(spec, net.layer_names(), [])
    tracker.record(net, 0, result)
    return net, tracker, result


@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_digits_normalised_residue_record_is_the_split_at_unit_output_norm(loss, seed, repro):
    """A normalised run records Theorem 4's split at the net whose last layer is rescaled to E||f|| = 1 on the exact
    evaluation views: it equals the split recomputed on that copy (check_unit_output_split); the output norm recorded
    is E||f|| over those views; the spread is E[1 - cos] over positive pairs / over negative pairs, computed by hand
    here; and scaling the last layer by 4 (exact in float32) scales the recorded norm by 4 and leaves the split
    unchanged."""
    net, tracker, result = _tiny_record(loss, seed)
    context = repro(loss=loss, seed=seed, **TINY_NORMALISED)
    (theta,), (main,) = result.theta_norm, result.main_norm
    check_unit_output_split(net, tracker.exact, tracker.loss, tracker.n_negatives, theta, main, context=context)
    views = tracker.views
    with torch.no_grad():
        f = view_outputs(net.double(), views).reshape(-1, 3)
        cos = (f / f.norm(dim=1, keepdim=True)) @ (f / f.norm(dim=1, keepdim=True)).T
        p = views.view_probs()
        same = torch.block_diag(*[torch.ones(views.n_augmentations, views.n_augmentations)] * views.n_samples)
        q = views.aug_probs.reshape(-1)
        r_pos = (p[:, None] * q[None, :] * same.double() * (1 - cos)).sum()
        r_neg = (p[:, None] * p[None, :] * (1 - cos)).sum()
    exact = tolerance(torch.float64, "exact")   # float64 sums of a few hundred terms, computed two ways
    assert result.spread[0] == pytest.approx(float(r_pos / r_neg), rel=exact.rtol), f"spread [{context}]"
    with torch.no_grad():
        norm = float((tracker.exact.view_probs() * net(tracker.exact.flat_views()).norm(dim=1)).sum())
    assert result.output_norm[0] == pytest.approx(norm, rel=exact.rtol), f"E||f|| over the exact views [{context}]"
    _, _, scaled = _tiny_record(loss, seed, scale=4.0)
    assert scaled.output_norm[0] == pytest.approx(4 * result.output_norm[0], rel=exact.rtol), f"norm x4 [{context}]"
    split = tolerance(torch.float64, "gradient")   # autograd's split of two float64 nets whose outputs agree exactly
    same_split = (pytest.approx(theta, rel=split.rtol), pytest.approx(main, rel=split.rtol))
    assert (scaled.theta_norm[0], scaled.main_norm[0]) == same_split, \
        f"the split at unit output norm must not depend on the last layer's scale [{context}]"


def test_digits_unit_output_residue_check_rejects_other_splits(seed, repro):
    """check_unit_output_split rejects the split of the un-rescaled net and the split at the net rescaled by the
    RMS output norm sqrt(E||f||^2) instead of the mean norm E||f||. The net's last layer is scaled by 3, so that the
    un-rescaled split is far from the rescaled one."""
    net, tracker, result = _tiny_record("infonce", seed, scale=3.0)
    data, context = tracker.exact, repro(loss="infonce", seed=seed, **TINY_NORMALISED)

    def norms(copy_):
        splits = [residue(copy_, name, data, tracker.loss, tracker.n_negatives) for name in copy_.layer_names()]
        return [float(s.theta.norm()) for s in splits], [float(s.main.norm()) for s in splits]

    unscaled = net.double()
    with torch.no_grad():
        rms = float((data.view_probs() * unscaled(data.flat_views()).pow(2).sum(1)).sum()) ** 0.5
    by_rms = BiasFreeMLP(net.widths, seed=0)
    with torch.no_grad():
        for w, v in zip(by_rms.weights, unscaled.weights):
            w.copy_(v)
        by_rms.weights[-1].div_(rms)
    for name, (theta, main) in {"un-rescaled": norms(unscaled), "rescaled by the RMS norm": norms(by_rms)}.items():
        with pytest.raises(IdentityViolation, match="unit mean output norm"):
            check_unit_output_split(net, data, tracker.loss, tracker.n_negatives, theta, main, context=context)
            pytest.fail(f"the {name} split passed [{context}]")


# ------------------------------------------------------------------ minibatch SimCLR training (slow)
# Claims of the digits study, asserted on seeds 3 and 4; the thresholds were set on seeds 0-2 (thresholds.py).
HELD_OUT_SEEDS = (3, 4)
WEIGHT_LAYERS = ("weights.0", "weights.1", "weights.2")


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
    for layer in WEIGHT_LAYERS:
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


# ------------------------------------------------------------------ normalised outputs (slow)
# The authors' setting: losses on z / ||z|| (r = 1 - cos), 600 steps; records at step 0 and 600 (the Theorem 4 split at
# the unit-output-norm network, the spread of the normalised outputs). Records do not touch the training's random
# streams, so init and final figures equal those of the study's runs recorded every 100 steps. Thresholds set on seeds
# 0-2 with `python scripts/digits_study.py --skip-raw --seeds 0 1 2`; asserted on HELD_OUT_SEEDS.
NORMALISED = dict(normalise=True, steps=600, record_every=600)


@functools.lru_cache(maxsize=None)
def _held_out_normalised(loss: str) -> dict:
    """seed -> run_figures of the normalised-output run; cached across tests."""
    figures = {s: run_figures(train_run(TrainSpec(loss=loss, seed=s, **NORMALISED))) for s in HELD_OUT_SEEDS}
    for s, f in figures.items():
        print(f"normalised {loss} seed {s}: probe output {f['probe_final output']:.4f} (gain "
              f"{f['probe_gain output']:+.4f}), kNN change {f['knn_change output']:+.4f}; spread drop "
              f"{f['spread_drop']:.3f}; " + ", ".join(f"{layer}: theta drop {f[f'theta_drop {layer}']:.3f}, ratio "
                                                      f"{f[f'final_ratio {layer}'] * f[f'ratio_drop {layer}']:.3f} -> "
                                                      f"{f[f'final_ratio {layer}']:.3f}" for layer in WEIGHT_LAYERS))
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "triplet", "maincov", "maincov_clean"])
def test_digits_normalised_training_raises_the_probe(loss, repro):
    """Normalised outputs: InfoNCE, soft Triplet and the covariance-only loss (both weightings) raise the output-layer
    5-shot probe."""
    values = {s: f["probe_gain output"] for s, f in _held_out_normalised(loss).items()}
    check_claim("training on normalised outputs raises the output 5-shot probe", "probe_gain output", values,
                thresholds.DIGITS_NORM_MIN_PROBE_GAIN, context=repro(loss=loss, seeds=HELD_OUT_SEEDS, **NORMALISED))


def _gaps_to_infonce(loss: str) -> dict:
    ours, theirs = _held_out_normalised(loss), _held_out_normalised("infonce")
    return {s: ours[s]["probe_final output"] - theirs[s]["probe_final output"] for s in HELD_OUT_SEEDS}


@pytest.mark.slow
def test_digits_covariance_only_learns_as_well_as_infonce(repro):
    """Normalised outputs, paired by seed: the covariance-only loss with the authors' weighting (detached per-pair
    weights from the augmented views) ends within the threshold of InfoNCE's output probe (the paper's real-data
    claim, in the authors' setting)."""
    check_claim("covariance-only (authors' weights) learns as well as InfoNCE (output probe, paired by seed)",
                "probe gap to InfoNCE", _gaps_to_infonce("maincov"), thresholds.DIGITS_NORM_MIN_GAP_TO_INFONCE,
                context=repro(loss="maincov", seeds=HELD_OUT_SEEDS, **NORMALISED))


@pytest.mark.slow
def test_digits_covariance_only_with_unaugmented_weights_learns_less(repro):
    """Normalised outputs: with the pair weights from the un-augmented images (no residue by construction) the
    covariance-only loss still learns (test above) but ends below InfoNCE on every seed."""
    check_claim("covariance-only (un-augmented weights) ends below InfoNCE", "probe gap to InfoNCE",
                _gaps_to_infonce("maincov_clean"), thresholds.DIGITS_NORM_CLEAN_MAX_GAP_TO_INFONCE, above=False,
                context=repro(loss="maincov_clean", seeds=HELD_OUT_SEEDS, **NORMALISED))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_digits_normalised_residue_does_not_shrink_as_spread_falls(loss, repro):
    """Issue 15, in the authors' setting (normalised outputs, 600 steps): E[r+]/E[r-] of the normalised outputs falls
    ~2.8x, yet Theorem 4's residue, measured at the unit-output-norm network, does not shrink with it: ||theta|| ends
    0.42-1.44x its init value (grew on 14 of 18 layer-runs) and the ratio ||theta|| / ||2 OP w|| rises 1.75-2.05x, to
    0.77-1.45 (seeds 0-2). Asserted in the form that held, on held-out seeds."""
    figures = _held_out_normalised(loss)
    context = repro(loss=loss, seeds=HELD_OUT_SEEDS, **NORMALISED)
    per_seed = lambda figure: {s: f[figure] for s, f in figures.items()}   # noqa: E731
    check_claim("normalised outputs become more invariant: E[r+]/E[r-] falls", "spread_drop", per_seed("spread_drop"),
                thresholds.DIGITS_NORM_MIN_SPREAD_DROP, context=context)
    for layer in WEIGHT_LAYERS:
        check_claim("the residue does not shrink much as the spread falls", f"theta_drop {layer}",
                    per_seed(f"theta_drop {layer}"), thresholds.DIGITS_NORM_MAX_THETA_DROP, above=False,
                    context=context)
        check_claim("the residue grows relative to the main term", f"ratio_drop {layer}",
                    per_seed(f"ratio_drop {layer}"), thresholds.DIGITS_NORM_MAX_RATIO_DROP, above=False,
                    context=context)
        check_claim("the residue ends comparable to the main term", f"final_ratio {layer}",
                    per_seed(f"final_ratio {layer}"), thresholds.DIGITS_NORM_MIN_FINAL_RATIO, context=context)
