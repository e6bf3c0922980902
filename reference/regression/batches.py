"""Several probe batch sizes: a property is run at each, and the worst size is reported.

A loss can be right at the probe's small batch and wrong at a large one: a chunked computation whose later
chunks mask the wrong column, a cap on the number of negatives. So the value, weight and balance properties
run at every size of ``geometry.batch_sizes`` (one of them >= 64) and report the worst; a loss built for one batch
size declares ``batch_size`` (or the run gives ``--ssl-batch``) and is probed at that size alone
(docs/REGRESSION.md, "Probe geometry").
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.engine import value_and_gradient
from dualnet_ssl.regression.geometry import Probe, batch_sizes, make_probe
from dualnet_ssl.regression.verdicts import Verdict, require_finite
from dualnet_ssl.seeding import derive_seed


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
    value, grad = value_and_gradient(adapter, z, probe.layout)
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
