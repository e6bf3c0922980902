"""BYOL / SimSiam learn-or-collapse table (docs/THEORY.md §9, "Dynamics, measured").

    python scripts/byol_study.py                          # toy clusters, seeds 0-4, 1500 steps (about 2.5 min, 1 core)
    python scripts/byol_study.py --seeds 3 --steps 600    # quicker
    python scripts/byol_study.py --data digits            # scikit-learn's digits, needs the digits extra

Prints one markdown row per variant (BYOL with centring and predictor; without centring; without predictor;
without both; SimSiam): probe, effective rank, spread and the implicit term's share of the first layer's gradient,
as mean (min-max) over seeds. Definitions: dualnet_ssl.byol_dynamics. Writes the same as a figure (``--figure``,
default byol_study_<data>.png; needs matplotlib, in the hltm extra): per variant and seed, the probe before and after
training, and the final spread (collapse: spread near 0).
"""
from __future__ import annotations

import argparse
import time

import torch

from dualnet_ssl.byol_dynamics import VARIANTS, format_table, gaussian_clusters, train_variant


def figure(runs, title: str, path: str) -> None:
    """Two panels, one column per variant: probe start -> end per seed (lines), and final spread per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(r.variant for r in runs))
    fig, (probe, spread) = plt.subplots(1, 2, figsize=(12, 4.5))
    for x, variant in enumerate(variants):
        mine = [r for r in runs if r.variant == variant]
        for r in mine:
            probe.plot([x - 0.15, x + 0.15], [r.start.probe, r.end.probe], color="C0" if r.end.probe >= r.start.probe
                       else "C3", marker="o", markersize=3, linewidth=1)
        spread.scatter([x] * len(mine), [r.end.spread for r in mine], color="C1", s=14)
    for ax, label in ((probe, "ridge-probe accuracy: start -> end"), (spread, "final spread (0: collapsed)")):
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels([v.replace(", ", ",\n") for v in variants], fontsize=7)
        ax.set_ylabel(label)
    spread.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("toy", "digits"), default="toy")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="subset of: " + "; ".join(VARIANTS))
    parser.add_argument("--figure", default=None, help="where to write the figure (default byol_study_<data>.png)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start, runs = time.time(), []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if args.data == "toy":
            data = gaussian_clusters(seed)
        else:
            from dualnet_ssl.digits.byol_views import digits_views
            data = digits_views(seed)
        for variant in args.variants:
            runs.append(train_variant(data, variant, seed, steps=args.steps))
            r = runs[-1]
            print(f"# {variant}, seed {seed}: probe {r.start.probe:.3f} -> {r.end.probe:.3f}, rank {r.start.rank:.2f} "
                  f"-> {r.end.rank:.2f}, spread {r.start.spread:.2f} -> {r.end.spread:.2f}, share {r.share:.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    title = f"{args.data}, {args.steps} steps, seeds {args.first_seed}-{args.first_seed + args.seeds - 1}"
    print(f"\n{title}\n")
    print(format_table(runs))
    path = args.figure or f"byol_study_{args.data}.png"
    figure(runs, f"BYOL / SimSiam learn or collapse: {title}", path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
