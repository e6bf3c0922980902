"""HLTM as the authors ran it, beside the suite's runs (docs/THEORY.md §8, "The authors' loss and biases"): per seed
and level, the best-|corr| metric before and after training, and as a fraction of the Bayes ceiling.

Arms: "infonce" (the suite's: -tau log softmax per sample, bias-free network) and "authors" (one softmax over the
batch-averaged squared distances, network with biases). The regime has headroom: depth 4, delta_lower 0.6.

Usage:
    python scripts/hltm_authors.py [--seeds 0-5] [--steps 2000] [--depth 4] [--delta-lower 0.6] [--device cpu]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics

from dualnet_ssl import hltm

ARMS = hltm.HEADROOM_ARMS


def seed_range(text: str) -> list:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def arm_specs(arm: str, seeds, *, steps: int, depth: int, delta_lower: float) -> list:
    """The tests' headroom specs (hltm.headroom_specs), with depth, delta_lower and steps as given."""
    return [dataclasses.replace(s, steps=steps, depth=depth, delta_lower=delta_lower)
            for s in hltm.headroom_specs(arm, seeds)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-5")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--delta-lower", type=float, default=0.6)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    seeds = seed_range(args.seeds)
    for arm in ARMS:
        results = hltm.train_many(arm_specs(arm, seeds, steps=args.steps, depth=args.depth,
                                            delta_lower=args.delta_lower), device=args.device)
        print(f"== {arm}: {hltm.describe_runs(results)}")
        gains = {l: [] for l in range(args.depth)}
        for r in results:
            before, after = r.initial.per_level(), r.final.per_level()
            ceiling = [float(c.mean()) for c in r.data.ceilings()]
            print(f"seed {r.spec.seed}: " + "  ".join(
                f"L{l} {b:.3f}->{a:.3f} (ceil {c:.3f})" for l, (b, a, c) in enumerate(zip(before, after, ceiling))),
                flush=True)
            for l in range(args.depth):
                gains[l].append(after[l] - before[l])
        for l, g in gains.items():
            sd = statistics.stdev(g) if len(g) > 1 else 0.0
            print(f"level {l}: gain mean {statistics.mean(g):+.3f} sd {sd:.3f} min {min(g):+.3f} "
                  f"({sum(x > 0 for x in g)}/{len(g)} rose)")


if __name__ == "__main__":
    main()
