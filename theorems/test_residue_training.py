"""Theorem 4 residue during training (THEORY.md §7; issue 2, item 6).

Claim, in this project's conventions: for L_tri and L_nce, -dE[L]/dw_l = 2 OP_l w_l + theta_l, with OP_l
weighted by the loss's pair mass omega. The paper bounds theta_l by the augmentation spread and says it shrinks
during training as the network becomes invariant to augmentation. We train the §7 setup (6 samples,
4 Gaussian augmentations, sigma 0.3, 8-16-16-6 bias-free ReLU MLP) by full-batch gradient descent on the
EXACT enumerated E[L], every layer, lr 0.3, 300 steps, float64 (``reference.training``), and compare
step 0 with step 300. Negatives may come from the anchor's own sample (x' = x can happen, THEORY.md §6).

Why the ratio ||theta_l|| / ||2 OP_l w_l|| must go to 1 near a stationary point: there the gradient vanishes,
so theta_l = -2 OP_l w_l. Quantitatively, the triangle inequality gives
|ratio - 1| <= ||dE/dw_l|| / ||2 OP_l w_l||. Our runs do not reach that regime: E[L] falls to its floor
(set by the self-negative tuples: tau E[log(1 + number of negatives drawn
from the anchor's own sample)], 0.058 for L_tri at tau 0.5), and all three of gradient, main term and residue
shrink together, so ||dE/dw_l|| / ||2 OP_l w_l|| stays 0.27-2.10 at step 300 and does not pin the ratio.

Measured, all 3 layers (15 layer-runs per row and seed set); drops are step-0 over step-300 values.
Seeds 0-4 set the thresholds; seeds 5-9 (the slow tests) checked them out of sample:

    setting            seeds  ||theta|| drop  (r+/r-) drop  ratio step 0  ratio step 300  rose   |g|/|2OPw| end
    L_tri tau 0.5      0-4     18.9 - 312     3.72 - 7.20   0.54 - 1.58    1.08 - 2.39    14/15   0.35 - 2.10
                       5-9     23.5 - 247     3.01 - 11.0   0.78 - 2.28    1.00 - 1.24     3/15   0.39 - 0.83
    L_tri tau 2        0-4     22.8 - 169     5.10 - 11.9   0.17 - 1.18    1.01 - 1.41    14/15   0.27 - 1.41
                       5-9     10.9 - 125     3.98 - 11.8   0.14 - 1.62    0.92 - 1.66     9/15   0.31 - 1.28
    L_nce H=2 tau 0.5  0-4     24.3 - 542     4.78 - 9.52   0.55 - 1.62    1.06 - 1.98    14/15   0.32 - 1.69
                       5-9     39.5 - 339     4.30 - 14.9   0.79 - 2.36    0.99 - 1.62     3/15   0.41 - 1.24
    L_nce H=2 tau 2    0-4     28.3 - 290     6.72 - 14.8   0.17 - 1.20    1.02 - 1.80    14/15   0.30 - 1.50
                       5-9     16.3 - 208     5.47 - 17.9   0.14 - 1.62    0.96 - 1.30    10/15   0.36 - 0.94

L_nce with H = 1 gave the same numbers as L_tri (r_0 = 0) to every printed digit, as THEORY.md §4 says it must.
E[r_+]/E[r_-] went from 0.045-0.17 to 0.0067-0.033 (seeds 0-4). So, as the prototype saw, the absolute residue
shrinks (here 11-540x, more than the prototype's 10-40x) together with the augmentation spread, while the
ratio ends near 1 (0.92-2.39): shrinking holds in absolute terms, not relative to the main term. Whether the
ratio *rises* depends on where it starts (0.14-2.36 at step 0): it rose in 56/60 layer-runs on seeds 0-4 but
only 25/60 on seeds 5-9, so that is not asserted.

Asserted (``reference.training.check_residue_shrinks``), every layer; margins against the smallest value over
seeds 0-9: ||theta|| drop >= 5 (smallest 10.9, margin 2.2x); spread drop >= 2 (smallest 3.01, margin 1.5x);
final ratio >= 0.5 (smallest 0.92, margin 1.8x). No upper bound on the ratio is asserted (no claim supports one).

With negatives restricted to other samples (``exclude_self``, as in a real batch) the picture differs;
measured on the same seeds and settings: ||theta|| drop 146-2492, spread drop 1.29-6.37, final ratio 0.29-0.72
(it rose in only 30 of 60 layer-runs),
E[L] -> 0 (no floor). The slow test ``..._excluding_self`` asserts that with its own thresholds.
"""
from __future__ import annotations

import pytest

from dualnet_ssl.losses import infonce, triplet
from dualnet_ssl.training import (PROTOTYPE_LR, PROTOTYPE_STEPS, PROTOTYPE_WIDTHS, check_residue_shrinks,
                                format_table, prototype_case, train)

DEFAULT_SEEDS = (0, 1, 2)
"""Seeds of the default runs: among the seeds 0-4 the thresholds were measured on."""
UNSEEN_SEEDS = (5, 6, 7, 8, 9)
"""Seeds of the slow runs: not used to set the thresholds, so they test them out of sample."""

EXCLUDE_SELF_MIN_SPREAD_DROP = 1.1
"""Spread drop with negatives from other samples only: smallest measured 1.29 (seed 4, whose spread starts at 0.038)."""
EXCLUDE_SELF_MIN_FINAL_RATIO = 0.15
"""Final ratio with negatives from other samples only: smallest measured 0.29 (range 0.29-0.72)."""


def run_and_check(loss, n_negatives, seed, repro, exclude_self=False, **thresholds):
    net, data = prototype_case(seed)
    traj = train(net, data, loss, lr=PROTOTYPE_LR, steps=PROTOTYPE_STEPS, record_every=PROTOTYPE_STEPS,
                 n_negatives=n_negatives, exclude_self=exclude_self)
    print(format_table([(f"{loss} H={n_negatives} seed {seed}", traj)], traj.layers[1]))
    context = repro(seed=seed, loss=loss, H=n_negatives, exclude_self=exclude_self,
                    arch=f"MLP {list(PROTOTYPE_WIDTHS)}", lr=PROTOTYPE_LR, steps=PROTOTYPE_STEPS)
    check_residue_shrinks(traj, context, **thresholds)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_triplet_residue_shrinks_during_training(tau, seed, repro):
    run_and_check(triplet(tau, margin=0.0), 1, seed, repro)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_infonce_residue_shrinks_during_training(tau, seed, repro):
    run_and_check(infonce(tau), 2, seed, repro)


@pytest.mark.slow
@pytest.mark.parametrize("seed", UNSEEN_SEEDS)
@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_triplet_residue_shrinks_during_training_unseen_seeds(tau, seed, repro):
    run_and_check(triplet(tau, margin=0.0), 1, seed, repro)


@pytest.mark.slow
@pytest.mark.parametrize("seed", UNSEEN_SEEDS)
@pytest.mark.parametrize("tau", [0.5, 2.0])
@pytest.mark.parametrize("n_negatives", [1, 2])
def test_infonce_residue_shrinks_during_training_unseen_seeds(n_negatives, tau, seed, repro):
    run_and_check(infonce(tau), n_negatives, seed, repro)


@pytest.mark.slow
@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
@pytest.mark.parametrize("loss, n_negatives", [(triplet(0.5), 1), (infonce(2.0), 2)], ids=["triplet", "infonce"])
def test_residue_shrinks_during_training_excluding_self(loss, n_negatives, seed, repro):
    run_and_check(loss, n_negatives, seed, repro, exclude_self=True,
                  min_spread_drop=EXCLUDE_SELF_MIN_SPREAD_DROP, min_final_ratio=EXCLUDE_SELF_MIN_FINAL_RATIO)
