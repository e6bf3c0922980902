"""Several probe batch sizes, and the up-front call that turns an unusable loss into one usage error.

A loss can be right at the probe's small batch and wrong at a large one: a chunked computation whose later
chunks mask the wrong column, a cap on the number of negatives. So the value, weight and balance properties
run at every size in ``BATCH_SIZES`` (one of them >= 64) and report the worst; a loss built for one batch
size declares ``batch_size`` (or the run gives ``--ssl-batch``) and is probed at that size alone
(docs/REGRESSION.md, "Probe geometry").
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from dualnet_ssl.errors import BadInput, NotApplicable
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.hints import usage_hint
from dualnet_ssl.regression.probe import PROBE_SAMPLES, Probe, make_probe
from dualnet_ssl.regression.verdicts import Verdict, require_finite
from dualnet_ssl.seeding import derive_seed

LARGE_BATCHES = (19, 64)
"""Probed besides the default size: an odd size (a partial last chunk for any power-of-two chunking) and 64
(2 x 64 = 128 points for a two-view loss, so chunks of 32 or 64 rows and caps below 127 negatives show)."""


def batch_sizes(adapter: LossAdapter) -> tuple[int, ...]:
    """The samples N per probe: the declared ``batch_size`` alone, else the default size and LARGE_BATCHES."""
    if getattr(adapter, "batch_size", None):
        return (int(adapter.batch_size),)
    return (PROBE_SAMPLES[adapter.form],) + LARGE_BATCHES


def probes(adapter: LossAdapter, seed: int) -> list[Probe]:
    """One probe per batch size (the first drawn from ``seed`` itself), fewer when ``dim`` caps the points."""
    made, seen = [], set()
    for k, n in enumerate(batch_sizes(adapter)):
        probe = make_probe(adapter, seed if k == 0 else derive_seed(seed, f"batch {n}"), n_samples=n)
        if probe.layout.n_points not in seen:
            seen.add(probe.layout.n_points)
            made.append(probe)
    return made


def _label(probe: Probe) -> str:
    return f"N={probe.layout.n_samples} ({probe.layout.n_points} points)"


def _require_finite_loss(adapter: LossAdapter, probe: Probe) -> None:
    """NaN or inf in the loss's value or gradient never passes any property, whatever the property looks at."""
    z = probe.points().requires_grad_(True)
    value = adapter.evaluate(z, probe.layout)
    grad = torch.autograd.grad(value.sum(), z, allow_unused=True)[0] if value.requires_grad else None
    require_finite(f"the loss's value or gradient at {_label(probe)}", value, grad)


def over_batches(check: Callable[[LossAdapter, Probe], Verdict], adapter: LossAdapter, seed: int) -> Verdict:
    """``check`` at every batch size: the first failing size's verdict (naming the sizes that hold), else the
    worst passing one; sizes where the check does not apply are skipped, and if none applies, so is the check."""
    done, skipped = [], None
    for probe in probes(adapter, seed):
        _require_finite_loss(adapter, probe)
        try:
            done.append((probe, check(adapter, probe)))
        except NotApplicable as err:
            skipped = skipped or err
    if not done:
        raise skipped
    failed = [(p, v) for p, v in done if not v.ok]
    if failed:
        probe, v = failed[0]
        held = [_label(p) for p, w in done if w.ok]
        note = (f"; it holds at {', '.join(held)} but not at {_label(probe)}: the loss depends on the batch size "
                "(a chunked computation, a cap on the number of negatives, a batch-size-dependent mask?)"
                if held else "")
        return dataclasses.replace(v, message=f"at {_label(probe)}: {v.message}{note}", where=_label(probe))
    probe, v = max(done, key=lambda pv: pv[1].measured or 0.0)
    sizes = ", ".join(_label(p) for p, _ in done)
    return dataclasses.replace(v, message=f"{v.message} (worst of batch sizes {sizes})", where=_label(probe))


def first_call(adapter: LossAdapter) -> None:
    """Call the loss once per probe batch size, in float64 and float32, with a backward pass; ``BadInput`` naming
    the cause (the size, the shapes, the error) when it cannot run, so a run gives one usage error, not N
    identical failures."""
    for dtype in (torch.float64, torch.float32):
        for n in batch_sizes(adapter) if dtype == torch.float64 else batch_sizes(adapter)[:1]:
            try:
                probe = make_probe(adapter, 0, n_samples=n)
            except NotApplicable:
                continue   # too few dimensions for this size: the properties say so themselves
            z = probe.points().to(dtype).requires_grad_(True)
            shapes = ", ".join(str(tuple(a.shape)) for a in probe.layout.split(z))
            where = (f"calling the loss on the probe batch (N={probe.layout.n_samples}, arguments of shapes "
                     f"{shapes}, {str(dtype).replace('torch.', '')})")
            try:
                value = adapter.evaluate(z, probe.layout)
                if not value.is_floating_point():
                    raise BadInput(f"the loss returned dtype {value.dtype}; a loss value must be floating point")
                if value.requires_grad:
                    torch.autograd.grad(value.sum(), z, allow_unused=True)
            except Exception as err:   # the user's loss cannot run on the probe: one usage error that says why
                hint = usage_hint(err, adapter, probe, dtype)   # fits the error's kind (shape, dtype, ...)
                raise BadInput(f"{where} raised {type(err).__name__}: {err}{hint}") from None
