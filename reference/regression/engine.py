"""The one door to user code: every in-process call of a declared contrastive loss (a ``LossAdapter``) goes through
this module; the rest of the wing reads declarations and calls these functions (tests/test_layering.py holds it).

- ``evaluate``: the loss on stacked probe points for a layout (docs/THEORY.md §5a), with ``output="logits"`` taken
  through a cross-entropy, and the returned shape held to the declared ``reduction``;
- ``first_call`` and its diagnosis (``usage_hint``): the loss called once per probe batch size, in float64 and
  float32, so an unusable loss is one usage error that says why (docs/REGRESSION.md, "Dtypes");
- ``with_inputs`` / ``in_declared_dtype``: the loss fed transformed inputs (a declared ``dtype``; the float32
  probe's rounding in ``precision``);
- ``Rebuild`` / ``rebuilder``: the loss rebuilt at another temperature by calling the user's factory again
  (``loading.call_factory``), for the float32 check's temperature grid.

Beside it: ``distributed`` is the multi-process engine (its worker calls ``adapter.fn`` on each rank's shard, in
its own processes), and ``noncontrastive`` calls its own declaration type, ``NonContrastiveLoss``.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

import torch
from torch import nn

from dualnet_ssl.errors import BadInput, NotApplicable
from dualnet_ssl.regression.declarations import LossAdapter
from dualnet_ssl.regression.geometry import Probe, batch_sizes, make_probe
from dualnet_ssl.regression.signatures import Layout

Rebuild = Callable[[float], LossAdapter | None]
"""The loss rebuilt at temperature tau, or None when it declares no ``temperature_kwarg``."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The values of the declaration field ``dtype``: the one dtype the loss accepts."""

NOT_CHECKED_IN = {
    "float32": "stability_float32 is not applicable (no float64 twin), and every exact identity is held to the "
               "float32 tolerances",
    "float64": "stability_float32 is not applicable: the loss is never run in float32, so its float32 accuracy is "
               "not checked",
}
"""What the suite cannot check when the loss accepts one dtype only (declared ``dtype``)."""


def evaluate(adapter: LossAdapter, z: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The loss on stacked points: a scalar, or (A,) per-anchor values when ``reduction="none"``."""
    value = adapter.fn(*layout.split(z))
    if adapter.output == "logits":
        value = _cross_entropy(value, adapter.reduction, adapter.name)
    if not isinstance(value, torch.Tensor):
        raise BadInput(f"loss '{adapter.name}' returned {type(value).__name__}, expected a tensor")
    expected = (layout.anchors.numel(),) if adapter.reduction == "none" else ()
    if value.numel() == 1 and not expected:
        return value.reshape(())
    if tuple(value.shape) != expected:
        raise BadInput(f"loss '{adapter.name}' returned shape {tuple(value.shape)}; its declaration "
                       f"reduction={adapter.reduction!r} means shape {expected}")
    return value


def value_and_gradient(adapter: LossAdapter, z: torch.Tensor, layout: Layout) -> tuple[torch.Tensor,
                                                                                       torch.Tensor | None]:
    """The loss at ``z`` (a leaf that requires grad) and dL/dz of its sum; the gradient is None when the value has
    no autograd graph or does not reach ``z``."""
    value = evaluate(adapter, z, layout)
    if not value.requires_grad:
        return value, None
    (grad,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
    return value, grad


def _cross_entropy(returned, reduction: str, name: str) -> torch.Tensor:
    """``output="logits"``: the loss is cross_entropy(logits, labels) of what the function returns."""
    if not (isinstance(returned, (tuple, list)) and len(returned) == 2
            and all(isinstance(t, torch.Tensor) for t in returned)):
        raise BadInput(f"loss '{name}' is declared output='logits' but returned {type(returned).__name__}; "
                       "expected a (logits, labels) pair of tensors")
    logits, labels = returned
    return nn.functional.cross_entropy(logits, labels.long(), reduction=reduction)


def with_inputs(adapter: LossAdapter, cast: Callable[[torch.Tensor, int], torch.Tensor]) -> LossAdapter:
    """The loss fed ``cast(a, k)`` for each floating tensor argument ``a`` (the k-th), inside the autograd graph."""
    fn = adapter.fn

    def fed(a, k):
        return cast(a, k) if torch.is_tensor(a) and a.is_floating_point() else a

    return dataclasses.replace(adapter, fn=lambda *args: fn(*(fed(a, k) for k, a in enumerate(args))))


def in_declared_dtype(adapter: LossAdapter) -> LossAdapter:
    """The loss fed its floating inputs in its declared ``dtype``, so a loss that accepts one dtype only runs;
    unchanged when no dtype is declared."""
    dtype = DTYPES.get(adapter.dtype or "")
    if dtype is None:
        return adapter
    return with_inputs(adapter, lambda a, k: a.to(dtype))


def rebuilder(build: Callable[..., LossAdapter]) -> Rebuild:
    """The ``Rebuild`` of a loss that ``build(**overrides)`` makes from the user's factory: the factory called
    again with ``temperature_kwarg=tau``, the declared ``temperature`` set to tau."""
    def at_temperature(tau: float) -> LossAdapter | None:
        key = build().temperature_kwarg
        if key is None:
            return None
        rebuilt = build(**{key: tau})
        return dataclasses.replace(rebuilt, temperature=tau)

    return at_temperature


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
                value, _ = value_and_gradient(adapter, z, probe.layout)
                if not value.is_floating_point():
                    raise BadInput(f"the loss returned dtype {value.dtype}; a loss value must be floating point")
            except Exception as err:   # the user's loss cannot run on the probe: one usage error that says why
                hint = usage_hint(err, adapter, probe, dtype)   # fits the error's kind (shape, dtype, ...)
                raise BadInput(f"{where} raised {type(err).__name__}: {err}{hint}") from None


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
        value_and_gradient(adapter, probe.points().to(other).requires_grad_(True), probe.layout)
        return True
    except Exception:   # it does not run there either
        return False


def usage_hint(err: BaseException, adapter: LossAdapter, probe: Probe, dtype: torch.dtype) -> str:
    """The hint appended to the usage error of a first call that raised ``err`` in ``dtype``, by the error's kind: a
    shape or size error suggests ``batch_size``; a dtype error says the suite calls the loss in float32 and float64
    and how to declare ``dtype``; a wrong reduction is named by the error itself."""
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
    if kind == "shape" and not adapter.batch_size:
        return "; if the loss needs one batch size, declare batch_size=N (or pass --ssl-batch N)"
    return ""
