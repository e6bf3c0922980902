"""The probe's geometry: n points given by an SPD Gram matrix in the layout a declaration gives, at the probe batch
sizes (docs/REGRESSION.md, "Probe geometry"). Nothing here calls the loss: ``probe`` reads its pair weights and
``engine`` calls it on these points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.regression.declarations import Layout, LossAdapter
from dualnet_ssl.seeding import make_generator


PROBE_SAMPLES = {"two_view": 6, "per_anchor": 4, "queue": 4, "bank": 4, "concat": 6, "indexes": 6, "views": 6,
                 "views_labels": 6}
"""Samples N per probe (a declared ``batch_size`` replaces it): 12 points for a two-view batch; 4 queries +
4 positives + negatives per anchor; V N points for the multi-view forms."""


POSITIVE_NOISE = 1.0
"""A positive pair's points are c + POSITIVE_NOISE * e (c, e standard normal): cos about 0.5 against the
negatives' 0 +- 0.3, so hard negatives exist and margin losses are active on some triplets."""


TEMPERATURE_SPREAD = 2.0
"""When a loss declares its temperature tau, the probe's structure is scaled by TEMPERATURE_SPREAD sqrt(tau)
(at most 1), so r / tau (or cos / tau) differs by a few units between pairs and no pair's weight underflows."""


@dataclass(frozen=True)
class Probe:
    """n points given by their Gram matrix, embedded in ``dim >= n`` columns."""

    layout: Layout
    gram: torch.Tensor
    dim: int
    seed: int

    def points(self, gram: torch.Tensor | None = None) -> torch.Tensor:
        """Z = cholesky(G), padded with zero columns to ``dim``: rows are the points, Z Z^T = G."""
        lower = torch.linalg.cholesky(self.gram if gram is None else gram)
        return nn.functional.pad(lower, (0, self.dim - lower.shape[1]))


def fitting_layout(adapter: LossAdapter, n_points_max: int | None, n_samples: int) -> Layout:
    """The probe layout with the most samples (at most ``n_samples``) whose points fit in ``n_points_max``;
    exactly ``adapter.batch_size`` samples when the loss declares a fixed batch size."""
    sizes = [adapter.batch_size] if adapter.batch_size else range(n_samples, 1, -1)
    for n in sizes:
        layout = adapter.layout(n)
        if n_points_max is None or layout.n_points <= n_points_max:
            return layout
    smallest = adapter.layout(sizes[-1] if adapter.batch_size else 2 * adapter.per_class)
    raise NotApplicable(f"pair weights are identifiable only with at least as many embedding dimensions as points; "
                        f"{n_points_max} dimensions are fewer than the {smallest.n_points} points of the "
                        f"smallest batch ({smallest.n_samples} samples)")


def make_probe(adapter: LossAdapter, seed: int, dtype: torch.dtype = torch.float64,
               n_samples: int | None = None) -> Probe:
    """Points with positives nearer each other than negatives, spread over about one temperature; for a loss that
    normalises (or whose caller does, ``unit_inputs``), unit rows with cosines around 0. ``n_samples`` (default
    ``PROBE_SAMPLES``; a declared ``batch_size`` overrides both) sets the batch size."""
    layout = fitting_layout(adapter, adapter.dim, n_samples or PROBE_SAMPLES[adapter.form])
    return probe_for(adapter, layout, seed, dtype)


def probe_for(adapter: LossAdapter, layout: Layout, seed: int, dtype: torch.dtype = torch.float64) -> Probe:
    """The probe's points (see ``make_probe``) for a given layout."""
    n = layout.n_points
    g = make_generator(seed)
    centres = torch.randn(int(layout.groups.max()) + 1, n, generator=g, dtype=torch.float64)
    noise = torch.randn(n, n, generator=g, dtype=torch.float64)
    z = (centres[layout.groups] + POSITIVE_NOISE * noise) / math.sqrt(n * (1 + POSITIVE_NOISE ** 2))
    spread = 1.0 if adapter.temperature is None else min(1.0, TEMPERATURE_SPREAD * math.sqrt(adapter.temperature))
    if adapter.on_unit_rows:
        # nearly orthogonal unit rows (cos about 0, as for random embeddings) plus the structure above
        z = nn.functional.normalize(torch.eye(n, dtype=torch.float64) + spread * nn.functional.normalize(z, dim=1),
                                    dim=1)
    else:
        z = spread * z * (0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64))
    return Probe(layout, (z @ z.T).to(dtype), max(n, adapter.dim or 0), seed)


LARGE_BATCHES = (19, 64)
"""Probed besides the default size: an odd size (a partial last chunk for any power-of-two chunking) and 64
(2 x 64 = 128 points for a two-view loss, so chunks of 32 or 64 rows and caps below 127 negatives show)."""


def batch_sizes(adapter: LossAdapter) -> tuple[int, ...]:
    """The samples N per probe: the declared ``batch_size`` alone, else the default size and LARGE_BATCHES."""
    if adapter.batch_size:
        return (int(adapter.batch_size),)
    return (PROBE_SAMPLES[adapter.form],) + LARGE_BATCHES
