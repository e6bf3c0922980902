"""Measure the Theorem 4 residue during training (docs/THEORY.md §7) over seeds: the figures behind the
thresholds of reference/thresholds.py, section "Theorem 4 residue during training".

    python scripts/measure_residue_training.py --seeds 0-4          # the seeds that set the thresholds
    python scripts/measure_residue_training.py --seeds 5-14         # held-out seeds, to check them

Prints, per setting, the smallest and largest ||theta|| drop, spread drop and final ratio over every layer.
"""
from __future__ import annotations

import argparse

import numpy as np

from dualnet_ssl.losses import infonce, triplet
from dualnet_ssl.runtime import one_intra_op_thread
from dualnet_ssl.training import PROTOTYPE_LR, PROTOTYPE_STEPS, prototype_case, train

SETTINGS = {
    "L_tri tau 0.5": (triplet(0.5), 1, False),
    "L_tri tau 2": (triplet(2.0), 1, False),
    "L_nce H=1 tau 0.5": (infonce(0.5), 1, False),
    "L_nce H=1 tau 2": (infonce(2.0), 1, False),
    "L_nce H=2 tau 0.5": (infonce(0.5), 2, False),
    "L_nce H=2 tau 2": (infonce(2.0), 2, False),
    "L_tri tau 0.5 exclude_self": (triplet(0.5), 1, True),
    "L_nce H=2 tau 2 exclude_self": (infonce(2.0), 2, True),
}


def seed_range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0-4"), help="e.g. 0-4")
    args = parser.parse_args()
    print(f"seeds {args.seeds[0]}-{args.seeds[-1]}, lr {PROTOTYPE_LR}, {PROTOTYPE_STEPS} steps; min - max over layers")
    print(f"{'setting':<30} {'theta drop':>16} {'spread drop':>14} {'final ratio':>13}")
    for label, (loss, n_negatives, exclude_self) in SETTINGS.items():
        theta, spread, ratio = [], [], []
        for seed in args.seeds:
            net, data = prototype_case(seed)
            with one_intra_op_thread():
                traj = train(net, data, loss, lr=PROTOTYPE_LR, steps=PROTOTYPE_STEPS, record_every=PROTOTYPE_STEPS,
                             n_negatives=n_negatives, exclude_self=exclude_self)
            spread.append(traj.spread()[0] / traj.spread()[-1])
            for layer in traj.layers:
                th = traj.column("theta_norm", layer)
                theta.append(th[0] / th[-1])
                ratio.append(traj.ratio(layer)[-1])
        print(f"{label:<30} {np.min(theta):7.3g} - {np.max(theta):6.3g} {np.min(spread):6.3g} - {np.max(spread):5.3g} "
              f"{np.min(ratio):5.3g} - {np.max(ratio):5.3g}", flush=True)


if __name__ == "__main__":
    main()
