"""HLTM latent recovery over a grid of depth x hid x delta_lower (docs/THEORY.md §8): a markdown table and a PNG.

For every cell: mean +- sd over seeds of the per-level metric (mean over a level's latents of the best
|corr| between the latent and its group's pre-activations), at initialisation and after training, raw and
as a fraction of the Bayes ceiling sqrt(Var E[z|x] / Var z). Exact by enumeration up to 16 leaves
(depth <= 4 for c = 2), otherwise on 20000 sampled inputs with exact posteriors.

Usage:
    python scripts/hltm_table.py [--depths 3 4 5] [--hids 2 5 10] [--deltas 0.5 0.8 0.9] [--seeds 4]
                                 [--steps 2000] [--device cpu] [--out hltm_table]  # writes hltm_table.md, .png
Needs matplotlib and tqdm.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import matplotlib
import tqdm

from dualnet_ssl import hltm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend chosen first)


def spread(values) -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f}±{sd:.2f}"


def per_level(results, pick) -> str:
    """'a / b / c', root level first: mean±sd over seeds of pick(result)[level]."""
    return " / ".join(spread(pick(r)[l] for r in results) for l in range(results[0].spec.depth))


def run_grid(args):
    groups = {}
    total = len(args.depths) * len(args.hids) * len(args.deltas) * args.seeds * args.steps
    with tqdm.tqdm(total=total, unit="step", desc="HLTM runs x steps") as bar:
        for depth, hid in itertools.product(args.depths, args.hids):
            specs = [hltm.TrainSpec(depth=depth, hid=hid, delta_lower=d, steps=args.steps, seed=args.first_seed + s)
                     for d in args.deltas for s in range(args.seeds)]
            start = time.perf_counter()
            results = hltm.train_many(specs, progress=lambda n, k=len(specs): bar.update(n * k), device=args.device)
            seconds = time.perf_counter() - start
            for i, d in enumerate(args.deltas):
                groups[(depth, hid, d)] = (results[i * args.seeds:(i + 1) * args.seeds], seconds / len(specs))
    return groups


def markdown(groups, args) -> str:
    lines = [f"Per-level metric (best |corr| of a latent with its group's units, averaged over the level's latents), "
             f"root level first, mean±sd over {args.seeds} seeds (seeds {args.first_seed}-"
             f"{args.first_seed + args.seeds - 1}). Binary tree, InfoNCE (-log form), tau 0.1, H 1, SGD lr 0.1, "
             f"batch 128, {args.steps} steps, bias-free, float32. 'of ceiling' divides by sqrt(Var E[z|x]/Var z).",
             "",
             "| depth | hid | delta_lower | init | trained | init / ceiling | trained / ceiling | ceiling | s/run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (depth, hid, d), (results, seconds) in groups.items():
        lines.append(
            f"| {depth} | {hid} | {d} | {per_level(results, lambda r: r.initial.per_level())} "
            f"| {per_level(results, lambda r: r.final.per_level())} "
            f"| {per_level(results, lambda r: r.initial.fraction_of_ceiling())} "
            f"| {per_level(results, lambda r: r.final.fraction_of_ceiling())} "
            f"| {per_level(results, lambda r: [float(c.mean()) for c in r.data.ceilings()])} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"


def figure(groups, args, path):
    fig, axes = plt.subplots(len(args.depths), len(args.deltas), figsize=(4 * len(args.deltas), 3.2 * len(args.depths)),
                             squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (i, depth), (j, d) in itertools.product(enumerate(args.depths), enumerate(args.deltas)):
        ax = axes[i][j]
        levels = list(range(depth))
        for k, hid in enumerate(args.hids):
            results, _ = groups[(depth, hid, d)]
            for pick, style, label in ((lambda r: r.initial.per_level(), "--", "init"),
                                       (lambda r: r.final.per_level(), "-", "trained")):
                values = [[pick(r)[l] for r in results] for l in levels]
                means = [statistics.mean(v) for v in values]
                sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
                ax.errorbar(levels, means, yerr=sds, linestyle=style, color=colors[k % len(colors)], marker="o",
                            capsize=2, label=f"hid {hid} {label}")
        ceiling = [statistics.mean(float(r.data.ceilings()[l].mean()) for r in groups[(depth, args.hids[0], d)][0])
                   for l in levels]
        ax.plot(levels, ceiling, ":", color="black", label="Bayes ceiling")
        ax.set_title(f"depth {depth}, delta_lower {d}")
        ax.set_xlabel("level (0 = root)")
        ax.set_xticks(levels)
        if j == 0:
            ax.set_ylabel("best |corr| (mean over latents)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--hids", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--deltas", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per cell (default 4)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--device", default="cpu", help="where the SGD steps run: cpu or cuda (default cpu)")
    parser.add_argument("--out", default="hltm_table", help="output stem: writes OUT.md and OUT.png")
    args = parser.parse_args(argv)
    groups = run_grid(args)
    table = markdown(groups, args)
    with open(f"{args.out}.md", "w") as f:
        f.write(table)
    figure(groups, args, f"{args.out}.png")
    print(table)
    print(f"wrote {args.out}.md and {args.out}.png")


if __name__ == "__main__":
    main()
