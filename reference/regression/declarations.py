"""Declaring a black-box loss: how it is called, which pairs it weighs, where its gradient flows, what it claims.

docs/REGRESSION.md, "Declaring a loss", lists every field; ``signatures`` lists the call forms. In short:

- ``form`` is the call signature (``two_view``: ``loss(z0, z1)``; ``per_anchor``: ``loss(query, positive,
  negatives)``; ``queue``, ``bank``, ``concat``, ``indexes``, ``views``, ``views_labels``), ``output`` says
  whether it returns the loss or ``(logits, labels)`` for a cross-entropy.
- ``gradient_to`` / ``detached_negatives``: the stop-gradient by design (docs/THEORY.md §5a).
- ``unit_inputs``: the caller normalises, so the loss is defined on unit rows only.
- ``reference`` (``infonce``, ``supcon_out``, ``supcon_in``) at ``temperature``, times ``scale``: per anchor
  ``-log softmax(-r/tau)`` at the positive, i.e. ``L_nce^tau / tau`` (docs/THEORY.md §4), or the "out"/"in"
  supervised-contrastive forms (§5a), with ``r = 1 - cos`` on unit rows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.signatures import (BANK_FORMS, FORMS, INPUTS, LABEL_FORMS, Layout, bank_layout,
                                               label_layout, two_view_layout)

REDUCTIONS = ("mean", "sum", "none")

NEGATIVE_MODES = ("unpaired", "paired")

REFERENCES = (None, "infonce", "supcon_out", "supcon_in")

GRADIENT_TO = ("all", "anchors")

OUTPUTS = ("loss", "logits")

DETACHED_BY = ("caller", "loss")
"""Who applies a declared stop-gradient: its caller (the loss may pass gradient to detached points; it is ignored)
or the loss itself (gradient reaching a point declared detached is then a bug, named by gradient_routing)."""


@dataclass(frozen=True)
class LossAdapter:
    """A black-box loss and its declaration (see the module docstring); ``engine`` is what calls it."""

    fn: Callable[..., torch.Tensor]
    form: str = "two_view"
    symmetric: bool = True
    same_view_negatives: bool = True
    negative_mode: str = "unpaired"
    n_negatives: int = 4
    n_views: int = 2
    per_class: int = 1
    reduction: str = "mean"
    output: str = "loss"
    normalises: bool = False
    unit_inputs: bool = False
    gradient_to: str = "all"
    detached_negatives: bool = False
    transposed_bank: bool = False
    reference: str | None = None
    temperature: float | None = None
    temperature_kwarg: str | None = None
    scale: float | None = None
    batch_size: int | None = None
    dim: int | None = None
    temperatures: tuple[float, float] | None = None   # the (low, high) tau range the float32 verdict covers
    strict_float32: bool = False                      # a float32 finding below the declared tau fails
    dtype: str | None = None                          # the one dtype the loss accepts: "float32" or "float64"
    world_size: int | None = None            # run distributed_gradient at this W (regression/distributed.py)
    distributed_convention: str = "local_mean"   # or "global": every rank computes the full global loss
    name: str = ""
    # who applies the declared stop-gradient (DETACHED_BY); "loss": the loss detaches by itself, and is checked for it
    detached_by: str = "caller"

    def __post_init__(self):
        checks = (("form", self.form, FORMS), ("reduction", self.reduction, REDUCTIONS),
                  ("negative_mode", self.negative_mode, NEGATIVE_MODES), ("reference", self.reference, REFERENCES),
                  ("gradient_to", self.gradient_to, GRADIENT_TO), ("output", self.output, OUTPUTS),
                  ("detached_by", self.detached_by, DETACHED_BY))
        for what, value, allowed in checks:
            if value not in allowed:
                raise BadInput(f"loss declaration: {what}={value!r} is not one of {allowed}")
        if not callable(self.fn):
            raise BadInput(f"loss declaration: fn must be callable, got {type(self.fn).__name__}")
        if self.reference is not None and not (self.temperature is not None and float(self.temperature) > 0):
            raise BadInput(f"loss declaration: reference={self.reference!r} needs a positive temperature, "
                           f"got {self.temperature!r}")
        if self.form in ("per_anchor", "queue", "bank"):
            object.__setattr__(self, "symmetric", False)   # one query per anchor: one-directional by construction
        for what, least in (("n_negatives", 1), ("n_views", 2), ("per_class", 1), ("batch_size", 2)):
            value = getattr(self, what)
            if value is not None and not (isinstance(value, int) and value >= least):
                raise BadInput(f"loss declaration: {what} must be an integer >= {least}, got {value!r}")
        self._check_conventions()
        self._check_float32_policy()

    def _check_float32_policy(self) -> None:
        """``dtype`` is None, "float32" or "float64"; ``strict_float32`` a bool; ``temperatures=(low, high)`` has
        0 < low <= high and a ``temperature_kwarg`` to rebuild the loss there."""
        if self.dtype not in (None, "float32", "float64"):
            raise BadInput(f"loss declaration: dtype={self.dtype!r} is not one of (None, 'float32', 'float64'): "
                           "declare it only for a loss that accepts one dtype")
        if not isinstance(self.strict_float32, bool):
            raise BadInput(f"loss declaration: strict_float32 must be true or false, got {self.strict_float32!r}")
        if self.temperatures is None:
            return
        pair = self.temperatures
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in pair)
                and 0 < float(pair[0]) <= float(pair[1])):
            raise BadInput(f"loss declaration: temperatures must be a pair (low, high) with 0 < low <= high, such as "
                           f"[0.05, 0.5], got {pair!r}")
        if not self.temperature_kwarg:
            raise BadInput("loss declaration: temperatures=(low, high) needs temperature_kwarg, the factory's keyword "
                           "for tau, so the float32 check can rebuild the loss at those temperatures")
        object.__setattr__(self, "temperatures", (float(pair[0]), float(pair[1])))

    def _check_conventions(self) -> None:
        def refuse(why: str):
            raise BadInput(f"loss declaration: {why} (docs/REGRESSION.md, \"Declaring a loss\")")

        self._check_row_norms(refuse)
        if self.detached_by == "loss" and self.gradient_to == "all" and not self.detached_negatives:
            refuse("detached_by='loss' says the loss itself stops a gradient, but none is declared: declare "
                   "gradient_to='anchors' or detached_negatives=True")
        if self.detached_negatives and self.form not in BANK_FORMS:
            refuse(f"detached_negatives needs a form with negatives of their own {BANK_FORMS}, not {self.form!r}")
        if self.n_views != 2 and self.form not in LABEL_FORMS:
            refuse(f"n_views={self.n_views} needs one of the forms {LABEL_FORMS}")
        if self.per_class != 1 and self.form not in ("indexes", "views_labels"):
            refuse(f"per_class={self.per_class} (several samples per label) needs form 'indexes' or "
                   "'views_labels', the forms that pass labels")
        if self.scale is not None and not (float(self.scale) > 0 and self.reference is not None):
            refuse(f"scale={self.scale!r} is a positive factor against a declared reference")
        if self.reference == "infonce" and self.positives_per_anchor > 1:
            refuse(f"each anchor has {self.positives_per_anchor} positives, so InfoNCE is ambiguous; declare "
                   "reference='supcon_out' (mean of log-probabilities) or 'supcon_in' (log of summed probabilities)")
        if self.batch_size is not None and self.per_class > 1 and self.batch_size % self.per_class:
            refuse(f"batch_size={self.batch_size} is not a multiple of per_class={self.per_class}")

    def _check_row_norms(self, refuse) -> None:
        """``normalises`` / ``unit_inputs``: True (every input) or a list of the form's input names (INPUTS);
        lists become tuples, and every input must then be one or the other."""
        names = INPUTS[self.form]
        for what in ("normalises", "unit_inputs"):
            value = getattr(self, what)
            if isinstance(value, (list, tuple)):
                unknown = [v for v in value if v not in names]
                if unknown:
                    refuse(f"{what} lists {unknown}, which are not inputs of the form {self.form!r}: its inputs are "
                           f"{list(names)}")
                object.__setattr__(self, what, tuple(value))
            elif not isinstance(value, bool):
                refuse(f"{what} is true, false or a list of input names {list(names)}; got {value!r}")
        if self.normalises is True and self.unit_inputs is True:
            refuse("declare normalises=True (the loss normalises its inputs) or unit_inputs=True (its caller "
                   "does), not both; to say which inputs arrive as unit rows, list them: unit_inputs=[...]")
        both = set(self.normalised_inputs) & set(self.unit_row_inputs)
        if both:
            refuse(f"inputs {sorted(both)} are declared both normalised by the loss and arriving as unit rows")
        if (self.normalises or self.unit_inputs) and len(self.normalised_inputs) + len(self.unit_row_inputs) < len(
                names):
            rest = [n for n in names if n not in self.normalised_inputs + self.unit_row_inputs]
            refuse(f"inputs {rest} are neither normalised by the loss nor declared unit rows; a loss on cosines "
                   f"needs every input on the unit sphere: add them to normalises or to unit_inputs")

    def _inputs_declared(self, own, other) -> tuple[str, ...]:
        names = INPUTS[self.form]
        if own is True:
            return tuple(n for n in names if not (isinstance(other, tuple) and n in other))
        return own if isinstance(own, tuple) else ()

    @property
    def normalised_inputs(self) -> tuple[str, ...]:
        """The inputs the loss L2-normalises itself (``normalises``)."""
        return self._inputs_declared(self.normalises, self.unit_inputs)

    @property
    def unit_row_inputs(self) -> tuple[str, ...]:
        """The inputs that arrive as unit rows and are not normalised again (``unit_inputs``)."""
        return self._inputs_declared(self.unit_inputs, self.normalises)

    def unit_points(self, layout: Layout) -> torch.Tensor:
        """(n_points,) bool: the stacked points of the inputs declared as arriving unit rows."""
        mask = torch.zeros(layout.n_points, dtype=torch.bool)
        for name, points in layout.input_points().items():
            mask[points] = name in self.unit_row_inputs
        return mask

    @property
    def positives_per_anchor(self) -> int:
        return self.n_views * self.per_class - 1 if self.form in LABEL_FORMS else 1

    @property
    def on_unit_rows(self) -> bool:
        """The loss sees r = 1 - cos: it normalises, or its caller gives it unit rows."""
        return self.normalises or self.unit_inputs

    def layout(self, n_samples: int) -> Layout:
        if self.per_class > 1:
            n_samples -= n_samples % self.per_class
        if n_samples < 2 * self.per_class:
            raise BadInput(f"a batch needs at least 2 samples (2 classes of per_class={self.per_class}), got "
                           f"{n_samples}")
        if self.form == "two_view":
            return two_view_layout(n_samples, self.symmetric, self.same_view_negatives, self.gradient_to)
        if self.form in BANK_FORMS:
            return bank_layout(self.form, n_samples, self.negative_mode, self.n_negatives, self.gradient_to,
                               self.detached_negatives, self.transposed_bank)
        return label_layout(self.form, n_samples, self.n_views, self.per_class, self.symmetric, self.gradient_to)

    def describe(self) -> str:
        if self.form == "two_view":
            shape = (f"two-view, {'symmetric' if self.symmetric else 'one-directional'}, "
                     f"{'with' if self.same_view_negatives else 'without'} same-view negatives")
        elif self.form in BANK_FORMS:
            shape = f"{self.form}, {self.negative_mode} negatives (H={self.n_negatives})"
        else:
            shape = (f"{self.form}, {self.n_views} views, {self.per_class} samples per label, "
                     f"{'every point' if self.symmetric else 'view 0'} as anchor")
        routing = "" if self.gradient_to == "all" else ", gradient into the anchors only"
        routing += ", negatives detached" if self.detached_negatives else ""
        rows = ", unit-row inputs" if self.unit_inputs is True else ""
        if isinstance(self.unit_inputs, tuple) or isinstance(self.normalises, tuple):
            rows = (f", normalises {', '.join(self.normalised_inputs)}, unit rows arrive in "
                    f"{', '.join(self.unit_row_inputs)}")
        routing += ", stopped by the loss itself" if self.detached_by == "loss" else ""
        ref = f", declared {self.reference}(tau={self.temperature:g})" if self.reference else ""
        ref += f" x {self.scale:g}" if self.scale is not None else ""
        return f"{shape}, reduction={self.reduction}, normalises={bool(self.normalised_inputs)}{rows}{routing}{ref}"


DECLARATION_FIELDS = tuple(f.name for f in dataclasses.fields(LossAdapter) if f.name not in ("fn", "name"))


def two_view(fn: Callable, **declares) -> LossAdapter:
    """Declare ``fn(z0, z1)``: a two-view batch loss."""
    return LossAdapter(fn, form="two_view", **declares)


def per_anchor(fn: Callable, **declares) -> LossAdapter:
    """Declare ``fn(query, positive, negatives)``: a per-anchor loss; ``symmetric`` is always False."""
    return LossAdapter(fn, form="per_anchor", **declares)


@dataclass(frozen=True)
class NetAdapter:
    """What a network factory may return: the module and the shape of one input (without the batch)."""

    net: nn.Module
    input_shape: tuple[int, ...]
    name: str = ""
