"""Over-parameterisation at initialisation (docs/THEORY.md §8, "Over-parameterisation"): the chance that some unit
of a group of |N| starts selective to the group's latent, against 1 - (1 - p)^|N|.

A unit k of group g at level l computes f_k = w_k . h_g(x) with w_k drawn He-normal, independently of the group's
other units; with the layers below fixed, the units' selectivities are therefore independent draws, and "some unit
of |N| is above the threshold" has chance 1 - (1 - p)^|N|, p the chance for one unit. The normalised selectivity
of a unit is |corr(f_k, z_g)| = |w_k . Cov(h_g, z_g)| / (sd(z_g) sqrt(w_k^T V[h_g] w_k)), sd(z_g) = 1/2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dualnet_ssl.errors import BadInput
from dualnet_ssl.hltm.lower_layers import group_inputs
from dualnet_ssl.hltm.model import EvalSet
from dualnet_ssl.hltm.sampler_checks import _check_z_scores
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.seeding import derive_seed, make_generator


def some_unit_law(p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """1 - (1 - p)^|N|: the chance that at least one of |N| independent units is selective."""
    return 1 - (1 - p) ** n


@dataclass(frozen=True)
class GroupMoments:
    """What a unit's selectivity needs from its group's inputs: Cov(h_g, z_g) (fan_in,) and V[h_g] (fan_in, fan_in)."""

    cov: torch.Tensor
    var: torch.Tensor

    @property
    def fan_in(self) -> int:
        return self.cov.shape[0]


def group_moments(net: TreeMirrorNet, data: EvalSet, level: int, group: int = 0) -> GroupMoments:
    """Cov(h_g, E[z_g | x]) (= Cov(h_g, z_g)) and V[h_g] under the evaluation set's weights."""
    if not 0 <= level < net.depth or not 0 <= group < net.branching ** level:
        raise BadInput(f"no group {group} at level {level} of a depth-{net.depth} tree")
    h = group_inputs(net, data.x, level)[:, group]
    h_c = h - data.weights @ h
    z = data.posterior[level][:, group]
    return GroupMoments(h_c.T @ (data.weights * (z - data.weights @ z)), h_c.T @ (data.weights[:, None] * h_c))


def unit_selectivities(moments: GroupMoments, units: torch.Tensor) -> torch.Tensor:
    """|corr(w_k . h_g, z_g)| for unit weights ``units`` (U, fan_in), in closed form from the moments, (U,)."""
    var = torch.einsum("ui,ij,uj->u", units, moments.var, units)
    return (units @ moments.cov).abs() / (0.5 * var.clamp_min(torch.finfo(torch.float64).tiny).sqrt())


def draw_units(n: int, fan_in: int, *, seed: int) -> torch.Tensor:
    """n units' He-normal weights (n, fan_in), as TreeMirrorNet draws them."""
    return torch.randn(n, fan_in, generator=make_generator(seed), dtype=torch.float64) * (2.0 / fan_in) ** 0.5


@dataclass(frozen=True)
class OverparamMeasurement:
    """One group: the threshold (a quantile of a calibration draw), p (one unit, measured on ``n_units`` separate
    draws) and, per |N| in ``sizes``, the fraction of ``n_groups`` fresh groups with some unit above it."""

    threshold: float
    p: float
    n_units: int
    sizes: tuple
    some_selective: tuple
    n_groups: int


def measure_overparam(moments: GroupMoments, *, seed: int, sizes=(1, 2, 4, 8, 16, 32), quantile: float = 0.9,
                      n_units: int = 20_000, n_groups: int = 2_000) -> OverparamMeasurement:
    """Three independent streams from ``seed``: "threshold" (the ``quantile`` of |corr| over ``n_units`` units),
    "p" (the fraction of ``n_units`` other units above it), "groups" (per size, ``n_groups`` groups of that size)."""
    if not 0 < quantile < 1:
        raise BadInput(f"quantile must lie in (0, 1), got {quantile}")
    fan_in = moments.fan_in
    calibration = unit_selectivities(moments, draw_units(n_units, fan_in, seed=derive_seed(seed, "threshold")))
    threshold = float(torch.quantile(calibration, quantile))
    single = unit_selectivities(moments, draw_units(n_units, fan_in, seed=derive_seed(seed, "p")))
    p = float((single >= threshold).double().mean())
    found = []
    for size in sizes:
        units = draw_units(n_groups * size, fan_in, seed=derive_seed(seed, f"groups {size}"))
        above = (unit_selectivities(moments, units) >= threshold).reshape(n_groups, size)
        found.append(float(above.any(1).double().mean()))
    return OverparamMeasurement(threshold, p, n_units, tuple(sizes), tuple(found), n_groups)


def check_overparam_law(measurements: list, *, law=some_unit_law, law_name: str = "1 - (1 - p)^|N|",
                        context: str = "") -> float:
    """The chance that some unit of |N| is selective against ``law(p, |N|)``, p measured on separate draws, for
    every measurement and size, within the family z threshold (binomial error of the fraction, plus p's own
    binomial error carried through the law). Returns the worst z."""
    __tracebackhide__ = True
    found, expected, stderr, labels = [], [], [], []
    for i, m in enumerate(measurements):
        p = torch.tensor(m.p, dtype=torch.float64, requires_grad=True)
        for size, fraction in zip(m.sizes, m.some_selective):
            q = law(p, torch.tensor(float(size), dtype=torch.float64)).clamp(0, 1)
            (slope,) = torch.autograd.grad(q, p)
            q = float(q.detach())
            var = q * (1 - q) / m.n_groups + float(slope) ** 2 * m.p * (1 - m.p) / m.n_units
            found.append(fraction)
            expected.append(q)
            stderr.append(var ** 0.5)
            labels.append(f"case {i} (p = {m.p:.4f}, threshold |corr| >= {m.threshold:.3f}), |N| = {size}")
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float64)   # noqa: E731
    return _check_z_scores(as_tensor(found), as_tensor(expected), as_tensor(stderr),
                           what=f"P(some unit of |N| selective) vs {law_name}", label=lambda k: labels[k],
                           context=context)
