"""Benchmark: reading a routed loss's pair weights off its point gradients (docs/THEORY.md §5a; docs/REGRESSION.md,
"Cost").

Run ``pytest theorems/test_regression_benchmarks.py --benchmark-only`` (add ``--runslow`` for a batch of 256, where
the per-point route alone holds a 1 GB basis). Group ``regression pair weights, N=<batch> (<n> points)``, both paths on
the same probe points and the same gradient (a MoCo-style queue loss: q and k normalised inside, the queue as unit
rows, gradient into the queries only):

- ``closed_form``: ``flow_from_point_gradients``, one QR factorisation of the points for all of them;
- ``per_point``: the definition, point by point: each point's n - 1 directions dr_ij/dz_i stacked as a (D, n - 1)
  basis and solved by least squares (``torch.linalg.lstsq``), as the suite did before.

Time: pytest-benchmark's rounds, ratios from the minimum; memory: peak bytes the allocator holds during one untimed
call (``dualnet_ssl.benchmarking.peak_bytes``). The ratio per_point / closed_form lands in ``extra_info`` and a
summary line. Each benchmark asserts that both paths give the same weights (exact float64 tolerance).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dualnet_ssl import regression
from dualnet_ssl.benchmarking import peak_bytes
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.regression.engine import value_and_gradient
from dualnet_ssl.tolerances import tolerance


BATCHES = [16, 64, pytest.param(256, marks=pytest.mark.slow)]
ROUNDS = {"closed_form": 10, "per_point": 3}


def _queue_loss(q, k, queue, tau=0.2):
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1).detach()
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.detach().T], 1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def per_point_flow(grads: torch.Tensor, z: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """(n, n): row i, the least-squares weights of point i's gradient over its own directions (j != i): -z_j for a
    unit row, -(z_j/(|z_i||z_j|) - cos_ij z_i/|z_i|^2) for a row the loss normalises."""
    n = len(z)
    norm = z.norm(dim=1)
    cos = (z @ z.T) / (norm[:, None] * norm[None, :])
    normalised = -(z[None] / (norm[:, None, None] * norm[None, :, None]) - cos[:, :, None] * z[:, None] / norm[
        :, None, None] ** 2)
    directions = torch.where(unit[:, None, None], -z[None].expand(n, -1, -1), normalised)     # (i, j, D)
    flow = torch.zeros(n, n, dtype=z.dtype)
    for i in range(n):
        others = torch.arange(n) != i
        flow[i, others] = torch.linalg.lstsq(directions[i, others].T, grads[i][:, None]).solution[:, 0]
    return flow


_MEASURED: dict[str, dict[str, dict]] = {}


@pytest.mark.parametrize("path", ["closed_form", "per_point"])
@pytest.mark.parametrize("batch", BATCHES)
def test_benchmark_pair_weights(benchmark, batch, path, repro):
    adapter = regression.LossAdapter(_queue_loss, form="queue", gradient_to="anchors", normalises=["q", "k"],
                                     unit_inputs=["queue"], batch_size=batch)
    probe = regression.make_probe(adapter, seed=0)
    z = probe.points().detach().clone().requires_grad_(True)
    _, grads = value_and_gradient(adapter, z, probe.layout)
    z, unit, live = z.detach(), adapter.unit_points(probe.layout), probe.layout.live
    paths = {"closed_form": lambda: regression.flow_from_point_gradients(grads, z, adapter, live, unit)[0],
             "per_point": lambda: per_point_flow(grads, z, unit) * live[:, None]}
    memory = peak_bytes(paths[path], torch.device("cpu"))
    benchmark.group = f"regression pair weights, N={batch} ({probe.layout.n_points} points)"
    flow = benchmark.pedantic(paths[path], rounds=ROUNDS[path], warmup_rounds=0)

    other = paths["per_point" if path == "closed_form" else "closed_form"]()
    tol = tolerance(torch.float64, "exact")
    assert_identity(flow, other, what=f"{path} pair weights vs the other route", tol=tol,
                    context=repro(batch=batch, path=path))
    benchmark.extra_info.update({"path": path, "points": probe.layout.n_points, "peak_bytes": memory})
    if benchmark.stats is not None:
        got = _MEASURED.setdefault(benchmark.group, {})
        got[path] = {"time": benchmark.stats.stats.min, "bytes": memory, "info": benchmark.extra_info}
        if len(got) == 2:
            ratios = {"per_point/closed_form time": got["per_point"]["time"] / got["closed_form"]["time"],
                      "per_point/closed_form memory": got["per_point"]["bytes"] / max(got["closed_form"]["bytes"], 1)}
            for entry in got.values():
                entry["info"].update(ratios)
            print(f"\n[ratios] {benchmark.group}: " + ", ".join(f"{k} {v:.3g}x" for k, v in ratios.items()))
