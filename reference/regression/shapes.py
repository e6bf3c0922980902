"""Shapes that vary independently of the probe's own: a declared ``scale`` must hold at every one of them.

The probe's embedding width equals its number of points, and its classes are all of one size, so a factor that
depends on the width or on the number of positives per anchor looks constant there (docs/REGRESSION.md, "Shapes
the probe varies"). ``variants`` gives the probe's points at other shapes, each with the dependency it would expose:

- the same points embedded isometrically in a much wider space (as if padded with zero columns and rotated);
- the points projected onto a narrower space (fewer dimensions than points; unit rows again on the sphere);
- for the forms that pass labels (``indexes``, ``views_labels``) with several positives, classes of unequal sizes,
  so anchors have unequal positive counts; for the forms whose views are an axis (``views``, ``views_labels``), one
  view more than declared.

``other_batches`` adds the probe's other batch sizes, and ``equidistant_positives`` gives points where no form of
several positives repels a positive (docs/THEORY.md §5a).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from dualnet_ssl.regression.batches import probes
from dualnet_ssl.regression.declarations import Layout, LossAdapter
from dualnet_ssl.regression.geometry import Probe, probe_for
from dualnet_ssl.regression.signatures import unequal_classes_layout
from dualnet_ssl.seeding import derive_seed, make_generator

WIDER = 4
"""The wide variant has WIDER times the probe's width (an isometric embedding in a random subspace)."""

NARROWER = 4
"""The narrow variant has max(2, width // NARROWER) dimensions: fewer than the points."""

WIDTH = "the embedding width"
POSITIVES = "the number of positives per anchor"
BATCH = "the batch size"


@dataclass(frozen=True)
class Variant:
    """The probe at another shape: its points, their layout, the declaration they are read with, and the dependency
    a mismatch here (but not at the probe) names."""

    dependency: str
    shape: str
    z: torch.Tensor
    layout: Layout
    adapter: LossAdapter
    same_distances_as: torch.Tensor | None = None    # points with the same pairwise distances, in fewer dimensions


def widened(z: torch.Tensor, width: int, seed: int) -> torch.Tensor:
    """The points embedded isometrically in ``width >= z.shape[1]`` dimensions (as zero columns and a rotation
    would)."""
    g = make_generator(derive_seed(seed, f"widen to {width}"))
    basis, _ = torch.linalg.qr(torch.randn(width, z.shape[1], generator=g, dtype=z.dtype))   # orthonormal columns
    return z @ basis.T


def narrowed(adapter: LossAdapter, z: torch.Tensor, width: int, seed: int) -> torch.Tensor:
    """The points projected onto a random ``width``-dimensional subspace (back on the unit sphere for a loss on unit
    rows): distances change, so a variant compares the loss with the reference at these points."""
    g = make_generator(derive_seed(seed, f"narrow to {width}"))
    basis, _ = torch.linalg.qr(torch.randn(z.shape[1], width, generator=g, dtype=z.dtype))
    out = z @ basis
    return nn.functional.normalize(out, dim=1) if adapter.on_unit_rows else out


def positive_counts(layout: Layout) -> tuple[int, int]:
    """(fewest, most) positives of an anchor."""
    counts = (layout.groups[layout.anchors][:, None] == layout.groups[None, :]).sum(1) - 1
    return int(counts.min()), int(counts.max())


def counts_text(layout: Layout) -> str:
    low, high = positive_counts(layout)
    if low == high:
        return f"{low} positive{'s' if low != 1 else ''} per anchor"
    return f"{low} to {high} positives per anchor"


def variants(adapter: LossAdapter, probe: Probe) -> list[Variant]:
    """The probe at the other shapes the module docstring lists (none of width when the loss declares its ``dim``)."""
    z, layout, found = probe.points(), probe.layout, []
    if adapter.dim is None:
        wide, narrow = WIDER * probe.dim, max(2, probe.dim // NARROWER)
        found += [Variant(WIDTH, f"width {wide} (the probe's {probe.dim})", widened(z, wide, probe.seed), layout,
                          adapter, same_distances_as=z),
                  Variant(WIDTH, f"width {narrow} ({layout.n_points} points)", narrowed(adapter, z, narrow, probe.seed),
                          layout, adapter)]
    if adapter.positives_per_anchor > 1 and adapter.form in ("indexes", "views_labels"):
        ragged = unequal_classes_layout(adapter.form, layout.n_samples, layout.n_views, adapter.symmetric,
                                        adapter.gradient_to)
        found.append(Variant(POSITIVES, f"classes of unequal sizes ({counts_text(ragged)}; the probe: "
                                        f"{counts_text(layout)})",
                             probe_for(adapter, ragged, derive_seed(probe.seed, "unequal classes")).points(), ragged,
                             adapter))
    if adapter.positives_per_anchor > 1 and adapter.form in ("views", "views_labels"):
        more = dataclasses.replace(adapter, n_views=adapter.n_views + 1)
        extra = more.layout(layout.n_samples)
        found.append(Variant(POSITIVES, f"{more.n_views} views ({counts_text(extra)}; the probe: "
                                        f"{counts_text(layout)})",
                             probe_for(more, extra, derive_seed(probe.seed, "one view more")).points(), extra, more))
    return found


def other_batches(adapter: LossAdapter, probe: Probe) -> list[Variant]:
    """The probe's other batch sizes (``batches.BATCH_SIZES``) as variants, to tell a factor that follows N."""
    return [Variant(BATCH, f"N={p.layout.n_samples} ({p.layout.n_points} points)", p.points(), p.layout, adapter)
            for p in probes(adapter, probe.seed) if p.layout.n_points != probe.layout.n_points]


EQUIDISTANT_COS = 0.5
"""Equidistant positives: cos between two points of one group is EQUIDISTANT_COS times the probe's spread."""

EQUIDISTANT_NOISE = 0.3
"""Equidistant positives: the other pairs' cosines are uniform in +- EQUIDISTANT_NOISE * spread / sqrt(n), small
enough to keep the Gram matrix positive definite (its smallest eigenvalue stays near 1 - EQUIDISTANT_COS)."""


def equidistant_positives(adapter: LossAdapter, probe: Probe) -> Probe:
    """The probe's layout at points where every pair within a group is equally far apart (unit rows; negatives at
    random cosines). Each anchor's positives then have equal softmax shares, at most 1/|P| each, so neither the
    "out" nor the "in" form of several positives (docs/THEORY.md §5a) may repel any positive there."""
    layout, n = probe.layout, probe.layout.n_points
    spread = 1.0 if adapter.temperature is None else min(1.0, 2.0 * float(adapter.temperature) ** 0.5)
    same = layout.groups[:, None] == layout.groups[None, :]
    g = make_generator(derive_seed(probe.seed, "equidistant positives"))
    noise = (2 * torch.rand(n, n, generator=g, dtype=torch.float64) - 1) * EQUIDISTANT_NOISE * spread / n ** 0.5
    gram = torch.where(same, EQUIDISTANT_COS * spread, torch.triu(noise, 1) + torch.triu(noise, 1).T)
    gram.fill_diagonal_(1.0)
    return Probe(layout, gram, probe.dim, probe.seed)
