"""Hints where the user looks (issue 18): in the failing records (the usage error of a first call gets its hint
from ``engine.usage_hint``).

- ``routing_hint``: when points the declaration calls live receive no gradient at all, an undeclared stop-gradient
  (MoCo's keys and queue, a memory bank) is the likely cause of every failing property; each failing record then
  names the declaration fields ``gradient_to`` / ``detached_negatives`` (docs/REGRESSION.md, "Conventions of real
  code"), not only the passing ``gradient_routing`` record.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.engine import value_and_gradient
from dualnet_ssl.regression.geometry import Probe, make_probe
from dualnet_ssl.regression.verdicts import Verdict, working_dtype
from dualnet_ssl.tolerances import tolerance


def points_without_gradient(adapter: LossAdapter, probe: Probe) -> torch.Tensor:
    """(n,) bool: the points declared live whose gradient is zero (below the ``gradient`` tolerance's floor)."""
    z = probe.points().detach().clone().requires_grad_(True)
    value, grad = value_and_gradient(adapter, z, probe.layout)
    if not value.requires_grad:
        return torch.zeros(probe.layout.n_points, dtype=torch.bool)
    if grad is None:
        return probe.layout.live.clone()
    norms = grad.double().norm(dim=1)
    tol = tolerance(working_dtype(value, grad), "gradient")
    return probe.layout.live & (norms <= tol.atol + tol.rtol * float(norms.max()))


def routing_hint(adapter: LossAdapter, probe: Probe) -> str:
    """The hint for a failing record when live-declared points receive no gradient (else "")."""
    if adapter.gradient_to != "all" or adapter.detached_negatives:
        return ""
    dark = points_without_gradient(adapter, probe)
    if not bool(dark.any()) or bool(dark.all()):
        return ""
    idx = torch.nonzero(dark).flatten().tolist()
    listed = ", ".join(map(str, idx[:8])) + (", ..." if len(idx) > 8 else "")
    return (f"; likely cause: {len(idx)} of the {probe.layout.n_points} probe points receive no gradient ({listed}), "
            "so the loss stops the gradient there (a MoCo key or queue, a memory bank) while the declaration says "
            "every point is live: if it is by design, declare gradient_to='anchors' (only the queries learn) or "
            "detached_negatives=True (the bank or queue is detached) (docs/REGRESSION.md, \"Conventions of real "
            "code\"); inactive margins can also leave points without gradient")


def with_routing_hint(verdict: Verdict, build: Callable[[], LossAdapter], seed: int) -> Verdict:
    """A failing verdict with the routing hint appended when it applies, probed at the default batch size (a passing
    verdict unchanged; ``build`` makes the declared loss)."""
    if verdict.ok or "gradient_to" in verdict.message:
        return verdict
    try:
        adapter = build()
        hint = routing_hint(adapter, make_probe(adapter, seed))   # the default size (a declared batch_size wins)
    except Exception:   # the hint is a courtesy: a loss that cannot be probed again keeps its verdict
        return verdict
    return dataclasses.replace(verdict, message=verdict.message + hint) if hint else verdict
