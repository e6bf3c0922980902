"""Hints where the user looks (issue 18): in the failing records, and in the one usage error of a first call.

- ``routing_hint``: when points the declaration calls live receive no gradient at all, an undeclared stop-gradient
  (MoCo's keys and queue, a memory bank) is the likely cause of every failing property; each failing record then
  names the declaration fields ``gradient_to`` / ``detached_negatives`` (docs/REGRESSION.md, "Conventions of real
  code"), not only the passing ``gradient_routing`` record.
- ``usage_hint``: the hint a first-call error gets fits its kind: a shape or size error suggests ``batch_size``; a
  dtype error says the suite calls the loss in float32 and float64 and how to declare ``dtype``; a wrong
  reduction is named by the error itself.
- ``in_declared_dtype``: a declared ``dtype`` the suite respects (the loss is fed that dtype only).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

import torch

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.probe import Probe, make_probe
from dualnet_ssl.regression.verdicts import Verdict, working_dtype
from dualnet_ssl.tolerances import tolerance

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The values of the declaration field ``dtype``: the one dtype the loss accepts."""

NOT_CHECKED_IN = {
    "float32": "stability_float32 is not applicable (no float64 twin), and every exact identity is held to the "
               "float32 tolerances",
    "float64": "stability_float32 is not applicable: the loss is never run in float32, so its float32 accuracy is "
               "not checked",
}
"""What the suite cannot check when the loss accepts one dtype only (declared ``dtype``)."""


def points_without_gradient(adapter: LossAdapter, probe: Probe) -> torch.Tensor:
    """(n,) bool: the points declared live whose gradient is zero (below the ``gradient`` tolerance's floor)."""
    z = probe.points().detach().clone().requires_grad_(True)
    value = adapter.evaluate(z, probe.layout)
    if not value.requires_grad:
        return torch.zeros(probe.layout.n_points, dtype=torch.bool)
    (grad,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
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


_DTYPE_ERROR = re.compile(r"dtype|scalar type|expected .*(Float|Double|Half)|(Float|Double) (but|and)|"
                          r"float32|float64|same type", re.IGNORECASE)
_SHAPE_ERROR = re.compile(r"size|shape|dimension|batch|mismatch|out of (range|bounds)|reshape|view", re.IGNORECASE)


def error_kind(err: BaseException) -> str:
    """``dtype``, ``reduction`` (the declaration's shape contract), ``shape`` or ``other``: what a first-call error
    is about, so the usage error's hint fits it."""
    text = f"{type(err).__name__}: {err}"
    if "its declaration reduction=" in text:
        return "reduction"
    if isinstance(err, BadInput):   # the suite's own contract (a non-float value, a wrong return type): said in full
        return "other"
    if _DTYPE_ERROR.search(text):
        return "dtype"
    if isinstance(err, IndexError) or _SHAPE_ERROR.search(text):
        return "shape"
    return "other"


def runs_in_other_dtype(adapter: LossAdapter, probe: Probe, dtype: torch.dtype) -> bool:
    """Whether the loss runs (value and backward) on the probe in the other of float32 / float64."""
    other = torch.float32 if dtype == torch.float64 else torch.float64
    try:
        z = probe.points().to(other).requires_grad_(True)
        value = adapter.evaluate(z, probe.layout)
        if value.requires_grad:
            torch.autograd.grad(value.sum(), z, allow_unused=True)
        return True
    except Exception:   # it does not run there either
        return False


def usage_hint(err: BaseException, adapter: LossAdapter, probe: Probe, dtype: torch.dtype) -> str:
    """The hint appended to the usage error of a first call that raised ``err`` in ``dtype``, by the error's kind."""
    kind = error_kind(err)
    if kind == "dtype":
        other_dtype_runs = runs_in_other_dtype(adapter, probe, dtype)
        here = str(dtype).replace("torch.", "")
        other = "float32" if here == "float64" else "float64"
        if not other_dtype_runs:
            return (f"; the suite calls the loss with float32 and float64 inputs, and it fails in both: make it follow "
                    "its inputs' dtype (docs/REGRESSION.md, \"Dtypes\")")
        return (f"; the suite calls the loss with float32 and float64 inputs, and it runs in {other} but not in "
                f"{here} (a {other} buffer or a hard-coded dtype inside?): make it follow its inputs' dtype, or "
                f"declare the one dtype it accepts, dtype='{other}' (then {NOT_CHECKED_IN[other]}) "
                "(docs/REGRESSION.md, \"Dtypes\")")
    if kind == "shape" and not getattr(adapter, "batch_size", None):
        return "; if the loss needs one batch size, declare batch_size=N (or pass --ssl-batch N)"
    return ""


def in_declared_dtype(adapter: LossAdapter) -> LossAdapter:
    """The loss fed its floating inputs in its declared ``dtype`` (inside the autograd graph), so a loss that
    accepts one dtype only runs; unchanged when no dtype is declared."""
    dtype = DTYPES.get(getattr(adapter, "dtype", None) or "")
    if dtype is None:
        return adapter
    fn = adapter.fn

    def cast(a):
        return a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a

    return dataclasses.replace(adapter, fn=lambda *args: fn(*(cast(a) for a in args)))
