"""Benchmarks (issue 2, item 10): structured 2 OP_l w and theta_l against the dense operator and one training step.

Run ``pytest theorems/test_benchmarks.py --benchmark-only`` (add ``--runslow`` for width 128, where the dense
OP_l alone is 16384^2 float64 = 2.1 GB). Groups, one per theorem and width, each on the same inputs:

- ``theorem3 2 OP_l w, width W`` (docs/THEORY.md §6): structured ``2 operator_times`` (one forward, one backward);
  dense ``2 operator_dense @ w`` (K stack, then OP formed); one training step on L_simp.
- ``theorem4 theta_l, width W`` (docs/THEORY.md §7): structured ``residue(...).theta`` (autograd -dE[L]/dw_l through the
  enumeration, then one structured OP_l w with the loss's pair mass); dense (the same -dE[L]/dw_l minus
  ``2 operator_dense(pair mass) @ w``); one training step on L_nce (tau 1, H = 1).

Cases and the correctness check live in ``dualnet_ssl.benchmarking``. Inputs: MLP [W, W, W, 8] (weights seed
NET_SEED), layer ``weights.1`` (the middle one, W x W), 6 samples x 4
augmentations of ``gaussian_augmented`` (sigma 0.3, seed DATA_SEED), float64. The training step is
``dualnet_ssl.training.gradient_step``: autograd of the exact enumerated E[L] over the same 24 views, all layers
updated; so it is the same loss on the same inputs as the quantity timed beside it (E[L] only: the step does
not form the pair mass, which theta needs).

Time: pytest-benchmark's rounds, one call each, net rebuilt by ``setup`` outside the timed part; ratios use
the minimum. Memory: peak bytes the torch allocator holds during one call beyond what it held before, measured
in a separate untimed call: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU a replay of every allocation
and free that ``torch.profiler`` (profile_memory=True) records, so temporaries freed inside an op count too.
Both ratios land in ``extra_info`` of every benchmark of the group (JSON output) and in a summary line.
Every benchmark also asserts its result: structured and dense agree (exact float64 tolerance), the training
step returns the exact E[L] at its starting weights, and the dense peak holds at least OP_l's own bytes.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import pytest
import torch

from dualnet_ssl.benchmarking import (DATA_SEED, LAYER, LOSSES, NET_SEED, case, check_against_reference, peak_bytes,
                                      target)
from dualnet_ssl.errors import IdentityViolation

WIDTHS = [16, 32, 64, pytest.param(128, marks=pytest.mark.slow)]
ROUNDS = {"structured": 20, "train_step": 20, "dense": 3}
"""Rounds per path: milliseconds-long calls get more rounds; the dense one (0.5 s at width 64) gets 3."""


_MEASURED: dict[str, dict[str, dict]] = defaultdict(dict)
"""group -> path -> {"time": min seconds, "bytes": peak bytes, "info": that benchmark's extra_info}."""


def share_ratios(group: str) -> None:
    """Write the group's ratios (same run) into every member's extra_info."""
    got = _MEASURED[group]
    ratios = {}
    for num, den in (("dense", "structured"), ("structured", "train_step")):
        if num in got and den in got:
            ratios[f"{num}/{den} time"] = got[num]["time"] / got[den]["time"]
            ratios[f"{num}/{den} memory"] = got[num]["bytes"] / max(got[den]["bytes"], 1)
    for entry in got.values():
        entry["info"].update(ratios)


@pytest.fixture(scope="module", autouse=True)
def ratio_summary(request):
    """After the module: one line per group with its measured ratios, on the terminal (past output capture)."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        for group, got in _MEASURED.items():
            info = next(iter(got.values()))["info"]
            ratios = ", ".join(f"{k} {v:.3g}x" for k, v in sorted(info.items()) if "/" in k)
            reporter.write_line(f"[ratios] {group}: {ratios or 'incomplete group'}")


@pytest.mark.parametrize("path", ["structured", "train_step", "dense"])
@pytest.mark.parametrize("theorem", ["theorem3", "theorem4"])
@pytest.mark.parametrize("width", WIDTHS)
def test_benchmark(benchmark, device, width, theorem, path, repro):
    net, data, w, refs = case(width, device.type)
    fn = target(theorem, path, net, data, w)
    fresh = lambda: ((copy.deepcopy(net),), {})

    def timed(n):
        out = fn(n)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    spare = copy.deepcopy(net)
    memory = peak_bytes(lambda: fn(spare), device)
    benchmark.group = f"{theorem} {'2 OP_l w' if theorem == 'theorem3' else 'theta_l'}, width {width}"
    result = benchmark.pedantic(timed, setup=fresh, rounds=ROUNDS[path], warmup_rounds=1)

    context = repro(width=width, layer=LAYER, loss=LOSSES[theorem], path=path, data_seed=DATA_SEED,
                    net_seed=NET_SEED)
    check_against_reference(result, refs, theorem, path, context=f"{benchmark.group}, {context}")
    op_bytes = w.numel() ** 2 * w.element_size()
    if path == "dense" and memory < op_bytes:
        raise IdentityViolation(f"measured dense peak {memory} B is below OP_l's own {op_bytes} B: the memory "
                                f"measurement missed allocations [{context}]")

    benchmark.extra_info.update({"path": path, "width": width, "peak_bytes": memory, "device": device.type})
    if benchmark.stats is not None:
        _MEASURED[benchmark.group][path] = {"time": benchmark.stats.stats.min, "bytes": memory,
                                            "info": benchmark.extra_info}
        share_ratios(benchmark.group)
