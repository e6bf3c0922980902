"""Adapters for a user's loss and network, and the loading of ``"pkg.mod:factory"`` specs (docs/REGRESSION.md).

A loss is a black box plus a declaration of which pairs it treats as positives and negatives:

- two-view batch, ``loss(z0, z1)`` with ``z0, z1`` of shape (N, D): sample ``i``'s two views are
  points ``i`` and ``N + i``. ``symmetric``: both views serve as anchors (SimCLR) or only ``z0``
  (one-directional, as ``info_nce.InfoNCE()``). ``same_view_negatives``: anchor ``i``'s negatives
  include the other samples' points of its own view (SimCLR) or only those of the other view.
- per-anchor, ``loss(query, positive, negatives)``: points are the N queries, the N positives and the
  negatives, either shared (``negative_mode="unpaired"``, negatives of shape (M, D)) or per query
  (``"paired"``, (N, H, D)).

``reduction`` says what the loss returns: the mean over anchors, their sum, or (``"none"``) one value
per anchor in anchor order, which enables the per-anchor balance check. ``reference="infonce"``
declares the loss to be NT-Xent/InfoNCE at ``temperature``: per anchor ``-log softmax(-r/tau)`` at the
positive, i.e. ``L_nce^tau / tau`` (THEORY.md §4), with ``r = 1 - cos`` when ``normalises``.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from reference.errors import BadInput
from reference.losses import PairLoss, checked_loss_values, infonce, pair_distance, simple, triplet
from reference.networks import BiasFreeMLP

FORMS = ("two_view", "per_anchor")
REDUCTIONS = ("mean", "sum", "none")
NEGATIVE_MODES = ("unpaired", "paired")
REFERENCES = (None, "infonce")


@dataclass(frozen=True)
class Layout:
    """Where the probe's points go in the loss call, and which pairs the loss declares.

    ``anchors (A,)``, ``positives (A,)`` and ``negatives (A, H)`` index the ``n_points`` stacked points;
    ``groups (n_points,)`` gives each point's sample (a positive pair shares one).
    """

    form: str
    n_samples: int
    n_points: int
    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    groups: torch.Tensor
    neg_shape: tuple[int, ...] = ()

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stacked points (n_points, D) -> the loss's arguments."""
        n = self.n_samples
        if self.form == "two_view":
            return z[:n], z[n:]
        return z[:n], z[n:2 * n], z[2 * n:].reshape(*self.neg_shape, z.shape[-1])

    def join(self, *args: torch.Tensor) -> torch.Tensor:
        """The loss's arguments -> stacked points (n_points, D); the inverse of ``split``."""
        return torch.cat([a.reshape(-1, a.shape[-1]) for a in args])

    def roles(self) -> torch.Tensor:
        """(n, n) symmetric: +1 on declared positive pairs, -1 on declared negatives, 0 elsewhere."""
        roles = torch.zeros(self.n_points, self.n_points, dtype=torch.long)
        anchor_col = self.anchors[:, None].expand_as(self.negatives)
        for rows, cols, sign in ((self.anchors, self.positives, 1), (anchor_col, self.negatives, -1)):
            roles[rows, cols] = sign
            roles[cols, rows] = sign
        return roles


def _two_view_layout(n: int, symmetric: bool, same_view_negatives: bool) -> Layout:
    points = torch.arange(2 * n)
    anchors = points if symmetric else points[:n]
    sample, view = anchors % n, anchors // n
    others = torch.stack([torch.cat([points[:j], points[j + 1:n]]) for j in range(n)])   # (N, N-1) samples != j
    negatives = others[sample] + n * (1 - view)[:, None]                                 # other view
    if same_view_negatives:
        negatives = torch.cat([negatives, others[sample] + n * view[:, None]], dim=1)
    return Layout("two_view", n, 2 * n, anchors, (anchors + n) % (2 * n), negatives, points % n)


def _per_anchor_layout(n: int, mode: str, n_negatives: int) -> Layout:
    queries = torch.arange(n)
    if mode == "unpaired":
        negatives, neg_shape = (2 * n + torch.arange(n_negatives)).expand(n, n_negatives), (n_negatives,)
    else:
        negatives, neg_shape = 2 * n + torch.arange(n * n_negatives).reshape(n, n_negatives), (n, n_negatives)
    n_neg_points = negatives.unique().numel()
    groups = torch.cat([queries, queries, n + torch.arange(n_neg_points)])
    return Layout("per_anchor", n, 2 * n + n_neg_points, queries, n + queries, negatives, groups, neg_shape)


@dataclass(frozen=True)
class LossAdapter:
    """A black-box loss and its declaration (see the module docstring)."""

    fn: Callable[..., torch.Tensor]
    form: str = "two_view"
    symmetric: bool = True
    same_view_negatives: bool = True
    negative_mode: str = "unpaired"
    n_negatives: int = 4
    reduction: str = "mean"
    normalises: bool = False
    reference: str | None = None
    temperature: float | None = None
    temperature_kwarg: str | None = None
    dim: int | None = None
    name: str = ""

    def __post_init__(self):
        checks = (("form", self.form, FORMS), ("reduction", self.reduction, REDUCTIONS),
                  ("negative_mode", self.negative_mode, NEGATIVE_MODES), ("reference", self.reference, REFERENCES))
        for what, value, allowed in checks:
            if value not in allowed:
                raise BadInput(f"loss declaration: {what}={value!r} is not one of {allowed}")
        if not callable(self.fn):
            raise BadInput(f"loss declaration: fn must be callable, got {type(self.fn).__name__}")
        if self.reference is not None and not (self.temperature is not None and float(self.temperature) > 0):
            raise BadInput(f"loss declaration: reference={self.reference!r} needs a positive temperature, "
                           f"got {self.temperature!r}")
        if self.form == "per_anchor":
            object.__setattr__(self, "symmetric", False)   # one query per anchor: one-directional by construction
        if int(self.n_negatives) < 1:
            raise BadInput(f"loss declaration: n_negatives must be >= 1, got {self.n_negatives}")

    def layout(self, n_samples: int) -> Layout:
        if n_samples < 2:
            raise BadInput(f"a batch needs at least 2 samples, got {n_samples}")
        if self.form == "two_view":
            return _two_view_layout(n_samples, self.symmetric, self.same_view_negatives)
        return _per_anchor_layout(n_samples, self.negative_mode, int(self.n_negatives))

    def evaluate(self, z: torch.Tensor, layout: Layout) -> torch.Tensor:
        """The loss on stacked points: a scalar, or (A,) per-anchor values when ``reduction="none"``."""
        value = self.fn(*layout.split(z))
        if not isinstance(value, torch.Tensor):
            raise BadInput(f"loss '{self.name}' returned {type(value).__name__}, expected a tensor")
        expected = (layout.anchors.numel(),) if self.reduction == "none" else ()
        if value.numel() == 1 and not expected:
            return value.reshape(())
        if tuple(value.shape) != expected:
            raise BadInput(f"loss '{self.name}' returned shape {tuple(value.shape)}; its declaration "
                           f"reduction={self.reduction!r} means shape {expected}")
        return value

    def describe(self) -> str:
        if self.form == "two_view":
            shape = (f"two-view, {'symmetric' if self.symmetric else 'one-directional'}, "
                     f"{'with' if self.same_view_negatives else 'without'} same-view negatives")
        else:
            shape = f"per-anchor, {self.negative_mode} negatives (H={self.n_negatives})"
        ref = f", declared {self.reference}(tau={self.temperature:g})" if self.reference else ""
        return f"{shape}, reduction={self.reduction}, normalises={self.normalises}{ref}"


DECLARATION_FIELDS = tuple(f.name for f in dataclasses.fields(LossAdapter) if f.name not in ("fn", "name"))


def two_view(fn: Callable, **declares) -> LossAdapter:
    """Declare ``fn(z0, z1)``: a two-view batch loss."""
    return LossAdapter(fn, form="two_view", **declares)


def per_anchor(fn: Callable, **declares) -> LossAdapter:
    """Declare ``fn(query, positive, negatives)``: a per-anchor loss; ``symmetric`` is always False."""
    return LossAdapter(fn, form="per_anchor", **declares)


def anchor_distances(layout: Layout, z: torch.Tensor, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_+ (A,), r_- (A, H)) per anchor; r = 1/2||z_i - z_j||^2, of the unit rows (= 1 - cos) if ``normalise``."""
    if normalise:
        z = nn.functional.normalize(z, dim=-1)
    r = pair_distance(z[:, None, :], z[None, :, :])
    return r[layout.anchors, layout.positives], r[layout.anchors[:, None], layout.negatives]


def reduce_anchors(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"mean": values.mean, "sum": values.sum, "none": lambda: values}[reduction]()


def anchor_weight(layout: Layout, reduction: str) -> float:
    """The factor each anchor's loss carries in the returned total: 1/A for a mean, else 1."""
    return 1.0 / layout.anchors.numel() if reduction == "mean" else 1.0


@dataclass(frozen=True)
class PairLossBatch:
    """A ``PairLoss`` of THEORY.md §4 evaluated over a batch laid out as ``declaration`` says, times ``scale``."""

    pair_loss: PairLoss
    declaration: LossAdapter
    scale: float = 1.0

    def values(self, layout: Layout, z: torch.Tensor) -> torch.Tensor:
        r_pos, r_neg = anchor_distances(layout, z, self.declaration.normalises)
        return self.scale * checked_loss_values(self.pair_loss, r_pos, r_neg)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        layout = self.declaration.layout(args[0].shape[0])
        return reduce_anchors(self.values(layout, layout.join(*args)), self.declaration.reduction)


def _pair_loss_adapter(pair_loss: PairLoss, name: str, scale: float = 1.0, **declares) -> LossAdapter:
    declaration = LossAdapter(lambda *a: None, name=name, **declares)
    return dataclasses.replace(declaration, fn=PairLossBatch(pair_loss, declaration, scale))


# ---- the suite's own reference losses, as batch losses (covariance form holds exactly: squared distances) ----

def reference_nt_xent(temperature: float = 0.5, reduction: str = "mean") -> LossAdapter:
    """SimCLR layout, -log softmax(-r/tau) of unnormalised squared distances: L_nce^tau / tau per anchor."""
    return _pair_loss_adapter(infonce(temperature), f"reference:nt_xent_sqdist(tau={temperature:g})",
                              1.0 / temperature, form="two_view", reduction=reduction, reference="infonce",
                              temperature=temperature, temperature_kwarg="temperature")


def reference_simple(reduction: str = "mean") -> LossAdapter:
    """SimCLR layout, L_simp = r_+ - mean_k r_k- per anchor."""
    return _pair_loss_adapter(simple(), "reference:simp", form="two_view", reduction=reduction)


def reference_triplet(temperature: float = 0.5, margin: float = 0.1) -> LossAdapter:
    """Per-anchor form with one paired negative: soft Triplet L_tri (THEORY.md §4)."""
    return _pair_loss_adapter(triplet(temperature, margin), f"reference:triplet(tau={temperature:g}, r0={margin:g})",
                              form="per_anchor", negative_mode="paired", n_negatives=1,
                              temperature=temperature, temperature_kwarg="temperature")


# ---- real peers (optional extra "peers"); each factory imports its package lazily ----

PEERS_HINT = "install the peers with pip install -e '.[peers]'"


LIGHTLY_HINT = ("lightly is not in the peers extra: its install brings torchvision and a CUDA build of torch "
                "that replaces this one (docs/REGRESSION.md); pip install lightly in an environment where that fits")


def _import_peer(module: str, hint: str = PEERS_HINT):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BadInput(f"peer package '{module}' is not importable ({err}); {hint}") from None


def pml_ntxent(temperature: float = 0.07, symmetric: bool = True) -> LossAdapter:
    """pytorch-metric-learning: ``SelfSupervisedLoss(NTXentLoss(temperature), symmetric)`` (cosine, mean)."""
    losses = _import_peer("pytorch_metric_learning.losses")
    fn = losses.SelfSupervisedLoss(losses.NTXentLoss(temperature=temperature), symmetric=symmetric)
    return two_view(fn, symmetric=symmetric, same_view_negatives=symmetric, normalises=True, reference="infonce",
                    temperature=temperature, temperature_kwarg="temperature",
                    name=f"pytorch-metric-learning NTXentLoss(temperature={temperature:g}, symmetric={symmetric})")


def pml_triplet(margin: float = 0.05) -> LossAdapter:
    """pytorch-metric-learning: ``SelfSupervisedLoss(TripletMarginLoss(margin))``, default distance
    (Euclidean distance of unit rows, not its square); SimCLR layout, normalises."""
    losses = _import_peer("pytorch_metric_learning.losses")
    return two_view(losses.SelfSupervisedLoss(losses.TripletMarginLoss(margin=margin)), normalises=True,
                    name=f"pytorch-metric-learning TripletMarginLoss(margin={margin:g})")


def info_nce(temperature: float = 0.1, reduction: str = "mean", negatives: str | None = None,
             n_negatives: int = 4) -> LossAdapter:
    """info-nce-pytorch ``InfoNCE``: ``negatives=None`` is the two-view form ``loss(query, positive_key)``
    (other samples' keys are the negatives, one-directional); ``"unpaired"``/``"paired"`` is the per-anchor
    form with explicit negative keys."""
    module = _import_peer("info_nce")
    mode = "unpaired" if negatives is None else negatives
    fn = module.InfoNCE(temperature=temperature, reduction=reduction, negative_mode=mode)
    common = dict(reduction=reduction, normalises=True, reference="infonce", temperature=temperature,
                  temperature_kwarg="temperature",
                  name=f"info-nce-pytorch InfoNCE(temperature={temperature:g}, reduction={reduction}, "
                       f"negatives={negatives})")
    if negatives is None:
        return two_view(fn, symmetric=False, same_view_negatives=False, **common)
    return per_anchor(fn, negative_mode=mode, n_negatives=n_negatives, **common)


def lightly_ntxent(temperature: float = 0.5) -> LossAdapter:
    """lightly ``NTXentLoss(temperature)`` without memory bank: SimCLR layout (2N anchors, same-view negatives),
    cosine, mean. Declaration read from lightly 1.6.0's source; lightly is not part of the peers extra
    (docs/REGRESSION.md says why)."""
    loss = _import_peer("lightly.loss", LIGHTLY_HINT)
    return two_view(loss.NTXentLoss(temperature=temperature), normalises=True, reference="infonce",
                    temperature=temperature, temperature_kwarg="temperature",
                    name=f"lightly NTXentLoss(temperature={temperature:g})")


# ---- loading "pkg.mod:factory" specs ----

def load_object(spec: str) -> Any:
    """``"pkg.mod:attr.sub"`` -> the object; ``BadInput`` that says what to fix when it cannot be found."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BadInput(f"'{spec}' is not of the form 'package.module:factory'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise BadInput(f"cannot import '{module_name}' (from '{spec}'): {err}; install your package "
                       "(pip install -e .) or run pytest where it is importable") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BadInput(f"'{module_name}' has no attribute '{attr}' (from '{spec}')")
        obj = getattr(obj, part)
    return obj


def parse_json_object(text: str | None, what: str) -> dict | None:
    """A JSON object from the command line (None stays None)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInput(f"{what} is not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise BadInput(f"{what} must be a JSON object such as '{{\"temperature\": 0.2}}', got {text!r}")
    return value


def _call(factory: Callable, kwargs: dict, spec: str):
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise BadInput(f"calling '{spec}' with {kwargs} failed: {err}") from None


@dataclass(frozen=True)
class LossSubject:
    """A loss to check: a factory, its keyword arguments and (for a bare callable) a declaration."""

    name: str
    factory: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    declares: dict | None = None

    def build(self, **overrides) -> LossAdapter:
        kwargs = {**self.kwargs, **overrides}
        made = _call(self.factory, kwargs, self.name)
        if isinstance(made, LossAdapter):
            adapter = dataclasses.replace(made, **(self.declares or {}))
        elif callable(made):
            if self.declares is None:
                raise BadInput(
                    f"'{self.name}' returned a bare {type(made).__name__}: declare which pairs it treats as positives "
                    "and negatives, either with --ssl-loss-declares '{\"form\": \"two_view\", \"symmetric\": true, "
                    "...}' or by returning reference.adapters.two_view(loss, ...) (docs/REGRESSION.md)")
            unknown = sorted(set(self.declares) - set(DECLARATION_FIELDS))
            if unknown:
                raise BadInput(f"--ssl-loss-declares: unknown fields {unknown}; known: {list(DECLARATION_FIELDS)}")
            declares = dict(self.declares)
            key = declares.get("temperature_kwarg")
            if key is not None and "temperature" not in declares and key in kwargs:
                declares["temperature"] = kwargs[key]
            adapter = LossAdapter(made, **declares)
        else:
            raise BadInput(f"'{self.name}' returned {type(made).__name__}, expected a loss callable or a LossAdapter")
        return adapter if adapter.name else dataclasses.replace(adapter, name=self.name)

    def at_temperature(self, tau: float) -> LossAdapter | None:
        """The loss rebuilt at temperature ``tau``, or None when it declares no ``temperature_kwarg``."""
        key = self.build().temperature_kwarg
        if key is None:
            return None
        rebuilt = self.build(**{key: tau})
        return dataclasses.replace(rebuilt, temperature=tau) if rebuilt.reference else rebuilt


def load_loss(spec: str, kwargs: str | None = None, declares: str | None = None) -> LossSubject:
    """``--ssl-loss SPEC --ssl-loss-kwargs JSON --ssl-loss-declares JSON`` -> a checked ``LossSubject``."""
    subject = LossSubject(spec, load_object(spec), parse_json_object(kwargs, "--ssl-loss-kwargs") or {},
                          parse_json_object(declares, "--ssl-loss-declares"))
    subject.build()   # fail at start-up, with the reason, rather than in every check
    return subject


def builtin_loss(factory: Callable[..., LossAdapter], **kwargs) -> LossSubject:
    name = factory(**kwargs).name
    return LossSubject(name, factory, kwargs)


@dataclass(frozen=True)
class NetAdapter:
    """What a network factory may return: the module and the shape of one input (without the batch)."""

    net: nn.Module
    input_shape: tuple[int, ...]
    name: str = ""


@dataclass(frozen=True)
class NetSubject:
    """A network to check: a factory, its keyword arguments and, for a bare module, the input shape."""

    name: str
    factory: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None

    def build(self, dtype: torch.dtype = torch.float64) -> NetAdapter:
        """A fresh copy of the network in ``dtype`` (float64 for exact identities; the user's object is untouched)."""
        made = _call(self.factory, self.kwargs, self.name)
        if isinstance(made, NetAdapter):
            net, shape = made.net, tuple(made.input_shape)
        elif isinstance(made, nn.Module):
            net, shape = made, self.input_shape or _infer_input_shape(made, self.name)
        else:
            raise BadInput(f"'{self.name}' returned {type(made).__name__}, expected an nn.Module or a NetAdapter")
        net = copy.deepcopy(net)
        try:
            net = net.to(dtype)
        except (RuntimeError, TypeError):
            pass   # a network that cannot change dtype is checked in its own, with that dtype's tolerances
        return NetAdapter(net, shape, self.name)


def _infer_input_shape(net: nn.Module, name: str) -> tuple[int, ...]:
    first = next((m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise BadInput(f"cannot tell the input shape of '{name}' (its first layer is not nn.Linear): pass "
                   "--ssl-model-input '[3, 32, 32]' or return reference.adapters.NetAdapter(net, input_shape)")


def load_net(spec: str, kwargs: str | None = None, input_shape: str | None = None) -> NetSubject:
    """``--ssl-model SPEC --ssl-model-kwargs JSON --ssl-model-input JSON`` -> a checked ``NetSubject``."""
    shape = None
    if input_shape is not None:
        try:
            shape = tuple(int(n) for n in json.loads(input_shape))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise BadInput(f"--ssl-model-input must be a JSON list of sizes such as '[3, 32, 32]', got "
                           f"{input_shape!r}") from None
    subject = NetSubject(spec, load_object(spec), parse_json_object(kwargs, "--ssl-model-kwargs") or {}, shape)
    subject.build()
    return subject


def reference_mlp(widths: tuple[int, ...] = (8, 32, 32, 16), seed: int = 0) -> NetAdapter:
    """The suite's own random bias-free ReLU MLP (THEORY.md §1), for the network checks by default."""
    return NetAdapter(BiasFreeMLP(widths, seed=seed), (widths[0],), f"reference:bias_free_mlp{list(widths)}")
