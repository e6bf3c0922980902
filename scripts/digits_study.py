"""The covariance-operator picture on real images: scikit-learn's digits (docs/DIGITS.md). Markdown table and PNG.

1. Residue ratio ||theta|| / ||2 OP w|| against augmentation strength s on exact empirical distributions
   (5 digits x 3 augmentations), fitted exponent per seed, beside the Gaussian one (docs/THEORY.md §7: ~2).
2. Minibatch SimCLR training (two-view batches) with L_simp, soft Triplet, InfoNCE and main-term-only, on the
   prototype setup (bias-free MLP 64-256-256-64, tau 0.2, Adam 1e-3, batch 256): 5-shot probe and kNN at every
   layer at init and after training, the final residue ratio per weight layer, and the drop of r_+/r_-.

3. The same training on L2-normalised outputs (r = 1 - cos, the authors' setting): InfoNCE, Triplet and the
   covariance-only loss with the authors' weighting (detached per-pair weights from the augmented views,
   ``maincov``) and with weights from the un-augmented images (``maincov_clean``); a table puts the raw and the
   normalised settings side by side. For InfoNCE and soft Triplet it also gives Theorem 4's split during the run,
   measured at the network rescaled to unit mean output norm (docs/DIGITS.md section 4), beside the spread
   E[r_+]/E[r_-] of the normalised outputs.

Usage:
    python scripts/digits_study.py [--seeds 0 1 2] [--steps 1000] [--norm-steps 600] [--norm-record-every 100]
                                   [--jobs 2] [--skip-raw] [--norm-losses ...] [--out digits_study]
Writes OUT.md, OUT.png and OUT.json. Needs the digits and hltm extras: pip install -e ".[digits,hltm]".
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import statistics
import time

import matplotlib
import torch
import tqdm

from dualnet_ssl import losses
from dualnet_ssl.digits.exact import strength_sweep
from dualnet_ssl.digits.training import TrainSpec, train_run
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend chosen first)

STRENGTHS = (0.03, 0.1, 0.3, 1.0)
RAW_LOSSES = ("simp", "triplet", "infonce", "maincov")
NORMALISED_LOSSES = ("infonce", "triplet", "maincov", "maincov_clean")
SWEEP_NETS = {"MLP 64-16-12-4, layer 2": (lambda s: BiasFreeMLP([64, 16, 12, 4], seed=s), "weights.1", False),
              "conv 3-4 + max-pool, conv 2": (lambda s: BiasFreeConvNet(1, 8, [3, 4], 3, seed=s), "convs.1", True)}
SWEEP_LOSSES = {"L_tri tau 0.5": (losses.triplet(0.5, margin=0.1), 1), "L_nce tau 0.5, H 3": (losses.infonce(0.5), 3)}


def pm(values, digits=2) -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f}±{sd:.{digits}f}"


def sweeps(seeds) -> dict:
    torch.set_num_threads(1)
    return {(net, loss): strength_sweep(make, name, fn, STRENGTHS, seeds, n_samples=5, n_augmentations=3,
                                        n_negatives=h, image_shape=conv)
            for net, (make, name, conv) in SWEEP_NETS.items() for loss, (fn, h) in SWEEP_LOSSES.items()}


def run_all(specs, jobs):
    results = {}
    with tqdm.tqdm(total=len(specs), unit="run", desc="digits training runs") as bar:
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(train_run, spec): spec for spec in specs}
            for future in concurrent.futures.as_completed(futures):
                spec = futures[future]
                results[(spec.loss, spec.seed) + (("normalised",) if spec.normalise else ())] = future.result()
                bar.set_postfix_str(f"{spec.loss} seed {spec.seed}")
                bar.update(1)
    return results


def markdown(sweep, runs, args, seconds) -> str:
    seeds = args.seeds
    lines = [f"## Residue ratio against augmentation strength (exact, 5 digits x 3 augmentations, seeds {seeds})", "",
             "Gaussian augmentations (docs/THEORY.md §7): exponent about 2.", "",
             "| network | loss | " + " | ".join(f"s={s:g}" for s in STRENGTHS) + " | exponent (mean±sd) |",
             "|---|---|" + "---|" * len(STRENGTHS) + "---|"]
    for (net, loss), sw in sweep.items():
        cells = " | ".join(pm([x["ratios"][i] for x in sw["sweeps"]], 4) for i in range(len(STRENGTHS)))
        lines.append(f"| {net} | {loss} | {cells} | {pm(sw['exponents'])} |")
    first = runs[(args.losses[0], seeds[0])]
    lines += ["", f"## Training ({args.steps} steps, MLP {list(first.spec.widths)}, tau {first.spec.tau}, "
              f"batch {first.spec.batch}, s = {first.spec.strength}; mean±sd over seeds {seeds})", "",
              "| loss | layer | 5-shot probe init | 5-shot probe final | kNN init | kNN final |",
              "|---|---|---|---|---|---|"]
    for loss in args.losses:
        rs = [runs[(loss, s)] for s in seeds]
        for i, layer in enumerate(first.feature_layers):
            lines.append(f"| {loss} | {layer} | {pm(r.probe['init'][i] for r in rs)} | "
                         f"{pm(r.probe['final'][i] for r in rs)} | {pm(r.knn['init'][i] for r in rs)} | "
                         f"{pm(r.knn['final'][i] for r in rs)} |")
    lines += ["", "| loss | weight layer | residue ratio init | residue ratio final | abs. residue drop | "
              "r+/r- init | r+/r- drop | hidden unit across/within init -> final |",
              "|---|---|---|---|---|---|---|---|"]
    for loss in args.losses:
        rs = [runs[(loss, s)] for s in seeds]
        for l, layer in enumerate(first.weight_layers):
            units = " / ".join(f"{pm(r.unit_ratio[0][h] for r in rs)} -> {pm(r.unit_ratio[-1][h] for r in rs)}"
                               for h in range(len(first.unit_ratio[0])))
            if loss == "simp":   # theta = 0 exactly (Theorem 3): its norm is rounding noise, not a figure
                residue_cells = "0 (exact) | 0 (exact) | n/a"
            else:
                residue_cells = (f"{pm(r.ratio(l)[0] for r in rs)} | {pm(r.ratio(l)[-1] for r in rs)} | "
                                 f"{pm(r.theta_norm[0][l] / r.theta_norm[-1][l] for r in rs)}")
            lines.append(f"| {loss} | {layer} | {residue_cells} | {pm(r.spread[0] for r in rs)} | "
                         f"{pm(r.spread[0] / r.spread[-1] for r in rs)} | {units if l == 0 else ''} |")
    lines += ["", f"Runtime: {seconds:.0f} s with {args.jobs} worker process(es)."]
    return "\n".join(lines) + "\n"


def side_by_side(runs, args) -> str:
    """Output-layer 5-shot probe, init -> final, mean±sd over seeds: raw and normalised outputs side by side."""
    lines = [f"## Raw and L2-normalised outputs side by side (output layer, 5-shot probe, init -> final, mean±sd "
             f"over seeds {args.seeds}; raw {args.steps} steps, normalised {args.norm_steps} steps)", "",
             "| loss | raw outputs | normalised outputs (r = 1 - cos) |", "|---|---|---|"]
    for loss in dict.fromkeys(RAW_LOSSES + NORMALISED_LOSSES):
        cells = []
        for key in ((), ("normalised",)):
            rs = [runs.get((loss, s) + key) for s in args.seeds]
            cells.append("not run" if None in rs else
                         f"{pm((r.probe['init'][-1] for r in rs), 3)} -> {pm((r.probe['final'][-1] for r in rs), 3)}")
        lines.append(f"| {loss} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def per_seed(runs) -> str:
    """One line per normalised-output run: output-layer probe and kNN, init -> final."""
    return "\n".join(f"normalised {loss} seed {seed}: probe output {r.probe['init'][-1]:.4f} -> "
                     f"{r.probe['final'][-1]:.4f}, kNN output {r.knn['init'][-1]:.4f} -> {r.knn['final'][-1]:.4f}"
                     for (loss, seed, *rest), r in sorted(runs.items()) if rest)


def normalised_residue(runs) -> str:
    """Per normalised InfoNCE / Triplet run and weight layer: Theorem 4's split at the unit-output-norm network,
    ||theta|| init / final, ratio ||theta|| / ||2 OP w|| at init and end, ||2 OP w|| init / final; per run the drop
    of E[r_+]/E[r_-] (normalised outputs) and the raw output norm E||f|| at init and end."""
    lines = ["## Normalised outputs: Theorem 4's split at the unit-output-norm network (per seed)", "",
             "| loss | seed | layer | ||theta|| init/final | ratio init | ratio final | ratio init/final | "
             "||2 OP w|| init/final | r+/r- init -> final (drop) | E||f|| init -> final |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (loss, seed, *rest), r in sorted(runs.items()):
        if not rest or loss not in ("infonce", "triplet") or not r.theta_norm:
            continue
        for l, layer in enumerate(r.weight_layers):
            ratio = r.ratio(l)
            lines.append(f"| {loss} | {seed} | {layer} | {r.theta_norm[0][l] / r.theta_norm[-1][l]:.3f} | "
                         f"{ratio[0]:.3f} | {ratio[-1]:.3f} | {ratio[0] / ratio[-1]:.3f} | "
                         f"{r.main_norm[0][l] / r.main_norm[-1][l]:.3f} | " + (
                             f"{r.spread[0]:.3f} -> {r.spread[-1]:.3f} ({r.spread[0] / r.spread[-1]:.2f}) | "
                             f"{r.output_norm[0]:.3f} -> {r.output_norm[-1]:.3f} |" if l == 0 else " | |"))
    return "\n".join(lines) + "\n"


def figure(sweep, runs, args, path):
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    for (net, loss), sw in sweep.items():
        axes[0].loglog(STRENGTHS, sw["mean_ratios"], marker="o", label=f"{net}, {loss}")
    axes[0].loglog(STRENGTHS, [sweep[next(iter(sweep))]["mean_ratios"][-1] * s ** 2 for s in STRENGTHS], "k:",
                   label="slope 2 (Gaussian)")
    axes[0].set(xlabel="augmentation strength s", ylabel="||theta|| / ||2 OP w|| (mean over seeds)",
                title="residue ratio vs strength")
    axes[0].legend(fontsize=6)
    for loss in args.losses:
        rs = [runs[(loss, s)] for s in args.seeds]
        steps = rs[0].steps
        theta = [statistics.mean(r.theta_norm[k][1] for r in rs) for k in range(len(steps))]
        if loss != "simp":   # theta = 0 exactly for L_simp (Theorem 3)
            axes[1].semilogy(steps, theta, marker="o", label=loss)
        axes[2].plot(steps, [statistics.mean(r.spread[k] for r in rs) for k in range(len(steps))], marker="o",
                     label=loss)
    axes[1].set(xlabel="step", ylabel="||theta|| of layer 2 (mean over seeds)", title="absolute residue")
    axes[2].set(xlabel="step", ylabel="E[r+] / E[r-] (mean over seeds)", title="augmentation spread")
    axes[1].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    names = list(dict.fromkeys(RAW_LOSSES + NORMALISED_LOSSES))
    for k, (key, label) in enumerate((((), "raw outputs"), (("normalised",), "normalised outputs"))):
        means, sds, where = [], [], []
        for i, loss in enumerate(names):
            rs = [runs.get((loss, s) + key) for s in args.seeds]
            if None not in rs:
                values = [r.probe["final"][-1] for r in rs]
                means.append(statistics.mean(values))
                sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
                where.append(i + (k - 0.5) * 0.4)
        axes[3].bar(where, means, width=0.4, yerr=sds, capsize=3, label=label)
    axes[3].set_xticks(range(len(names)), names, fontsize=7)
    axes[3].set(ylabel="output 5-shot probe after training", title="raw vs normalised outputs", ylim=(0.5, 1.0))
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=list(RAW_LOSSES), choices=RAW_LOSSES)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--norm-steps", type=int, default=600, help="steps of the normalised-output runs")
    parser.add_argument("--skip-raw", action="store_true", help="normalised-output runs only (no sweep, no raw runs)")
    parser.add_argument("--norm-losses", nargs="+", default=list(NORMALISED_LOSSES), choices=NORMALISED_LOSSES)
    parser.add_argument("--norm-record-every", type=int, default=100,
                        help="steps between the normalised runs' records of the Theorem 4 split (default 100)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each (default 2)")
    parser.add_argument("--out", default="digits_study", help="output stem: writes OUT.md, OUT.png, OUT.json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    specs = [TrainSpec(loss=loss, seed=s, steps=args.norm_steps, record_every=args.norm_record_every, normalise=True)
             for loss in args.norm_losses for s in args.seeds]
    if not args.skip_raw:
        sweep = sweeps(args.seeds)
        specs += [TrainSpec(loss=loss, seed=s, steps=args.steps, record_every=args.steps // 4)
                  for loss in args.losses for s in args.seeds]
    runs = run_all(specs, args.jobs)
    seconds = time.perf_counter() - start
    normalised = side_by_side(runs, args) + "\n" + per_seed(runs) + "\n\n" + normalised_residue(runs)
    if args.skip_raw:
        print(normalised)
        with open(f"{args.out}.json", "w") as f:
            json.dump({"runs": [dict(dataclasses.asdict(r), spec=dataclasses.asdict(r.spec)) for r in runs.values()]},
                      f, indent=1)
        print(f"{seconds:.0f} s; wrote {args.out}.json")
        return
    table = markdown(sweep, runs, args, seconds) + "\n" + normalised
    with open(f"{args.out}.md", "w") as f:
        f.write(table)
    figure(sweep, runs, args, f"{args.out}.png")
    with open(f"{args.out}.json", "w") as f:
        json.dump({"sweeps": {f"{n} | {l}": sw for (n, l), sw in sweep.items()},
                   "runs": [dict(dataclasses.asdict(r), spec=dataclasses.asdict(r.spec)) for r in runs.values()]},
                  f, indent=1)
    print(table)
    print(f"wrote {args.out}.md, {args.out}.png and {args.out}.json")


if __name__ == "__main__":
    main()
