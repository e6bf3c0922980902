"""Theorem 4 residue during training (docs/THEORY.md §7; issue 2, item 6).

Claim, in this project's conventions: for L_tri and L_nce, -dE[L]/dw_l = 2 OP_l w_l + theta_l, with OP_l
weighted by the loss's pair mass omega. The paper bounds theta_l by the augmentation spread and says it shrinks
during training as the network becomes invariant to augmentation. We train the §7 setup (6 samples,
4 Gaussian augmentations, sigma 0.3, 8-16-16-6 bias-free ReLU MLP) by full-batch gradient descent on the
EXACT enumerated E[L], every layer, lr 0.3, 300 steps, float64 (``dualnet_ssl.training``), and compare
step 0 with step 300. Negatives may come from the anchor's own sample (x' = x can happen, docs/THEORY.md §6).

Why the ratio ||theta_l|| / ||2 OP_l w_l|| must go to 1 near a stationary point: there the gradient vanishes,
so theta_l = -2 OP_l w_l. Quantitatively, the triangle inequality gives
|ratio - 1| <= ||dE/dw_l|| / ||2 OP_l w_l||. Our runs do not reach that regime: E[L] falls to its floor
(set by the self-negative tuples: tau E[log(1 + number of negatives drawn
from the anchor's own sample)], 0.058 for L_tri at tau 0.5), and all three of gradient, main term and residue
shrink together, so ||dE/dw_l|| / ||2 OP_l w_l|| stays of order 1 at step 300 (``format_table`` prints it) and
does not pin the ratio.

Measured with ``python scripts/measure_residue_training.py --seeds 0-4`` (then ``--seeds 5-14``), all 3 layers;
drops are step-0 over step-300 values, min - max over layers and seeds. Seeds 0-4 set the thresholds
(``dualnet_ssl.thresholds``, section "Theorem 4 residue during training"); the tests assert on seeds 5-14 only,
5-7 by default and 8-14 with --runslow:

    setting                  seeds   ||theta|| drop   (r+/r-) drop   ratio at step 300
    L_tri tau 0.5            0-4      18.9 - 245       3.83 - 9.06    1.13 - 1.69
                             5-14     22.6 - 248       4.00 - 12.2    1.04 - 1.76
    L_tri tau 2              0-4      16.3 - 164       6.79 - 13.5    1.07 - 1.42
                             5-14     23.9 - 165       3.95 - 22.0    1.00 - 1.57
    L_nce H=2 tau 0.5        0-4      33.8 - 396       5.31 - 12.2    1.12 - 1.60
                             5-14     33.8 - 351       4.99 - 17.8    1.07 - 1.67
    L_nce H=2 tau 2          0-4      19.5 - 239       9.39 - 17.4    1.10 - 1.62
                             5-14     25.9 - 244       5.12 - 33.1    0.94 - 1.65

L_nce with H = 1 gave the same numbers as L_tri (r_0 = 0) to every printed digit, as docs/THEORY.md §4 says it
must. So, as the prototype saw, the absolute residue shrinks (16-400x) together with the augmentation spread, while
the ratio ends near 1 (0.94-1.76): shrinking holds in absolute terms, not relative to the main term. Whether the
ratio *rises* depends on where it starts, so that is not asserted.

Asserted (``dualnet_ssl.training.check_residue_shrinks``), every layer: ||theta|| drop >= 5, spread drop >= 2, final
ratio >= 0.5 (margins 3.3x, 1.9x, 2.1x below the smallest value on seeds 0-4). No upper bound on the ratio is
asserted (no claim supports one).

With negatives restricted to other samples (``exclude_self``, as in a real batch) the picture differs
(L_tri tau 0.5 and L_nce H=2 tau 2): ||theta|| drop 56.6-1790 (seeds 0-4), spread drop 1.51-5.73, final ratio
0.46-0.79 (0.29-0.89 on seeds 5-14), E[L] -> 0 (no floor). Those runs are checked against their own thresholds,
on seed 5 by default and seeds 6-14 with --runslow.
"""
from __future__ import annotations

import pytest

from dualnet_ssl.losses import infonce, triplet
from dualnet_ssl.thresholds import RESIDUE_EXCLUDE_SELF_MIN_FINAL_RATIO, RESIDUE_EXCLUDE_SELF_MIN_SPREAD_DROP
from dualnet_ssl.training import (PROTOTYPE_LR, PROTOTYPE_STEPS, PROTOTYPE_WIDTHS, check_residue_shrinks,
                                  format_table, prototype_case, train)

DEFAULT_SEEDS = (5, 6, 7)
"""Seeds of the default runs: held out, none of them set a threshold (seeds 0-4 did)."""
UNSEEN_SEEDS = (8, 9, 10, 11, 12, 13, 14)
"""Seeds of the slow runs: held out as well."""
EXCLUDE_SELF = {"min_spread_drop": RESIDUE_EXCLUDE_SELF_MIN_SPREAD_DROP,
                "min_final_ratio": RESIDUE_EXCLUDE_SELF_MIN_FINAL_RATIO}


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


def test_triplet_residue_shrinks_during_training_excluding_self(repro):
    run_and_check(triplet(0.5), 1, DEFAULT_SEEDS[0], repro, exclude_self=True, **EXCLUDE_SELF)


@pytest.mark.slow
@pytest.mark.parametrize("seed", DEFAULT_SEEDS[1:] + UNSEEN_SEEDS)
@pytest.mark.parametrize("loss, n_negatives", [(triplet(0.5), 1), (infonce(2.0), 2)], ids=["triplet", "infonce"])
def test_residue_shrinks_during_training_excluding_self(loss, n_negatives, seed, repro):
    run_and_check(loss, n_negatives, seed, repro, exclude_self=True, **EXCLUDE_SELF)
