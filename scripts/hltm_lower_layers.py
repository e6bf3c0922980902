"""Lower-layer alignment and over-parameterisation of the HLTM network at initialisation (docs/THEORY.md §8,
"Lower layers"): the figures behind the HLTM_ALIGNMENT_* and over-parameterisation thresholds.

Usage:
    python scripts/hltm_lower_layers.py alignment [--seeds 0-23] [--depth 3] [--branching 2] [--hid 10]
                                                  [--delta-lower 0.8]
    python scripts/hltm_lower_layers.py overparam [--seeds 0-23] ...
Alignment: per seed and level, the alignment of OP_l's top eigenvector (the network's own ReLU gates) with the
selectivity directions a_g, and a random direction's. Seeds as in the tests: tree from the seed, weights from
derive_seed(seed, "net").
"""
from __future__ import annotations

import argparse
import statistics

from dualnet_ssl import hltm
from dualnet_ssl.hltm import lower_layers
from dualnet_ssl.networks import TreeMirrorNet


def seed_range(text: str) -> list:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def alignment(args):
    per_level = {}
    for seed in seed_range(args.seeds):
        model = hltm.make_hltm(args.depth, args.branching, args.delta_lower, seed=seed)
        net = TreeMirrorNet(args.depth, args.branching, args.hid, seed=hltm.derive_seed(seed, "net"))
        rows = lower_layers.layer_alignments(net, model)
        print(f"seed {seed}: " + "  ".join(f"level {r.level} {r.alignment:.3f} (chance {r.chance:.3f})" for r in rows),
              flush=True)
        for r in rows:
            per_level.setdefault(r.level, []).append((r.alignment, r.chance))
    for level, values in sorted(per_level.items()):
        al = [a for a, _ in values]
        ch = [c for _, c in values]
        print(f"level {level}: alignment mean {statistics.mean(al):.3f} sd {statistics.stdev(al):.3f} "
              f"min {min(al):.3f}; chance mean {statistics.mean(ch):.3f} max {max(ch):.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("alignment", "overparam"))
    parser.add_argument("--seeds", default="0-23")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--branching", type=int, default=2)
    parser.add_argument("--hid", type=int, default=10)
    parser.add_argument("--delta-lower", type=float, default=0.8)
    args = parser.parse_args(argv)
    {"alignment": alignment}[args.what](args)


if __name__ == "__main__":
    main()
