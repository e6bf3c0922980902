"""Regression checks for non-contrastive losses: BYOL, SimSiam and their relatives (docs/REGRESSION.md,
"Non-contrastive losses"; docs/THEORY.md §9).

A declaration says how the loss is called and what it claims to be:

- ``form="single"``: ``loss(online_pred, target)``, one direction (solo-learn's ``byol_loss_func``,
  ``simsiam_loss_func``, lightly's ``NegativeCosineSimilarity``); ``form="pairs"``: ``loss(p0, p1, t0, t1)``,
  symmetrised over the views, ``D(p0, t1) + D(p1, t0)`` times ``scale``;
- ``reference``: ``"negative_cosine"`` (``-mean_b cos(p_b, t_b)``) or ``"normalised_mse"``
  (``mean_b ||p_b/|p_b| - t_b/|t_b|||^2 = 2 - 2 mean cos``), each direction times ``scale``;
- ``detaches_target``: the loss stops the target's gradient itself (``True``, as solo-learn and lightly's users
  do by ``.detach()``); with ``False`` the caller detaches and the stop-gradient check is skipped.

Properties, each a ``CheckResult``: the stop-gradient (no gradient reaches a target, every prediction gets one);
value and gradient against the reference in float64; float32 against float64 on the same rounded inputs; at batch
sizes 6, 19 and 64. With a model: ``implicit_term_share`` measures how much of the gradient comes through the
batch statistics of BatchNorm layers in training mode, and warns when it is zero.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from dualnet_ssl.compare import relative_error
from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.loading import call_factory
from dualnet_ssl.regression.loading import load_object, parse_json_object
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import derive_seed, make_generator
from dualnet_ssl.tolerances import tolerance

FORMS = ("single", "pairs")
REFERENCES = ("negative_cosine", "normalised_mse")
BATCH_SIZES = (6, 19, 64)


@dataclass(frozen=True)
class NonContrastiveLoss:
    """A non-contrastive loss and its declaration (module docstring)."""

    fn: Callable[..., torch.Tensor]
    form: str = "single"
    reference: str = "negative_cosine"
    scale: float = 1.0
    detaches_target: bool = True
    dim: int = 16
    name: str = ""

    def __post_init__(self):
        if not callable(self.fn):
            raise BadInput(f"non-contrastive declaration: fn must be callable, got {type(self.fn).__name__}")
        for what, value, allowed in (("form", self.form, FORMS), ("reference", self.reference, REFERENCES)):
            if value not in allowed:
                raise BadInput(f"non-contrastive declaration: {what}={value!r} is not one of {allowed}")
        if not float(self.scale) > 0 or int(self.dim) < 2:
            raise BadInput(f"non-contrastive declaration: scale must be > 0 and dim >= 2, got scale={self.scale!r}, "
                           f"dim={self.dim!r}")

    @property
    def label(self) -> str:
        return self.name or getattr(self.fn, "__name__", type(self.fn).__name__)

    @property
    def n_views(self) -> int:
        return 1 if self.form == "single" else 2


def non_contrastive(fn, *, form: str = "single", reference: str = "negative_cosine", scale: float = 1.0,
                    detaches_target: bool = True, dim: int = 16, name: str = "") -> NonContrastiveLoss:
    """Declare a non-contrastive loss (the module docstring lists the fields)."""
    return NonContrastiveLoss(fn, form, reference, float(scale), bool(detaches_target), int(dim), name)


def _draw(decl: NonContrastiveLoss, batch: int, seed: int, dtype=torch.float64):
    """(predictions, targets): ``n_views`` each, (batch, dim), leaves that require grad."""
    g = make_generator(derive_seed(seed, "noncontrastive inputs"))
    draw = [torch.randn(batch, decl.dim, generator=g, dtype=torch.float64) for _ in range(2 * decl.n_views)]
    leaves = [d.to(dtype).requires_grad_(True) for d in draw]
    return leaves[:decl.n_views], leaves[decl.n_views:]


def _call(decl: NonContrastiveLoss, preds, targets) -> torch.Tensor:
    out = decl.fn(preds[0], targets[0]) if decl.form == "single" else decl.fn(preds[0], preds[1], targets[0],
                                                                                 targets[1])
    if not isinstance(out, torch.Tensor) or out.dim() != 0:
        raise BadInput(f"{decl.label} must return a scalar tensor, got "
                       f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    return out


def _direction(p: torch.Tensor, t: torch.Tensor, reference: str) -> torch.Tensor:
    cos = F.cosine_similarity(p, t.detach(), dim=-1).mean()
    return -cos if reference == "negative_cosine" else 2 - 2 * cos


def reference_loss(decl: NonContrastiveLoss, preds, targets) -> torch.Tensor:
    """The declared reference with the targets detached: one direction, or ``D(p0, t1) + D(p1, t0)``."""
    pairs = [(preds[0], targets[0])] if decl.form == "single" else [(preds[0], targets[1]), (preds[1], targets[0])]
    return decl.scale * sum(_direction(p, t, decl.reference) for p, t in pairs)


def _result(decl, check, ok, message, *, measured=None, kind=None, dtype=torch.float64, seed=None, batch=None):
    tol = tolerance(dtype, kind) if kind else None
    return CheckResult(check=check, status="pass" if ok else "fail", message=message, measured=measured,
                       tolerance=None if tol is None else f"rtol={tol.rtol:g}, atol={tol.atol:g}",
                       tolerance_reason=None if tol is None else tol.reason,
                       where="" if batch is None else f"batch {batch}", seed=seed, subject=decl.label)


def check_stop_gradient(decl: NonContrastiveLoss, batch: int, seed: int) -> CheckResult:
    """No gradient reaches any target; every prediction gets a non-zero one (declared routing)."""
    if not decl.detaches_target:
        return CheckResult("stop_gradient", "not_applicable", "declared detaches_target=False: the caller detaches "
                           "the target, so the loss is not expected to", subject=decl.label, seed=seed)
    preds, targets = _draw(decl, batch, seed)
    grads = torch.autograd.grad(_call(decl, preds, targets), preds + targets, allow_unused=True)
    leaked = [i for i, g in enumerate(grads[decl.n_views:]) if g is not None and bool((g != 0).any())]
    starved = [i for i, g in enumerate(grads[:decl.n_views]) if g is None or not bool((g != 0).any())]
    if leaked:
        return _result(decl, "stop_gradient", False, f"gradient reaches target(s) {leaked}: the target is not "
                       f"detached (BYOL/SimSiam stop the target's gradient)", seed=seed, batch=batch)
    if starved:
        return _result(decl, "stop_gradient", False, f"prediction(s) {starved} get no gradient: the stop-gradient "
                       f"sits on the online branch, or a direction of the symmetric loss is missing", seed=seed,
                       batch=batch)
    return _result(decl, "stop_gradient", True, "targets get no gradient, predictions do", seed=seed, batch=batch)


def check_reference(decl: NonContrastiveLoss, batch: int, seed: int) -> CheckResult:
    """Value and gradient (wrt the predictions) equal the declared reference times ``scale``, float64."""
    preds, targets = _draw(decl, batch, seed)
    value = _call(decl, preds, targets)
    grads = torch.autograd.grad(value, preds, allow_unused=True)
    value = value.detach()
    ref = reference_loss(decl, preds, targets)
    ref_grads = torch.autograd.grad(ref, preds)
    got = torch.cat([value.detach().reshape(1)] + [torch.zeros_like(r).flatten() if g is None else g.flatten()
                                                   for g, r in zip(grads, ref_grads)])
    ref = ref.detach()
    want = torch.cat([ref.reshape(1)] + [r.flatten() for r in ref_grads])
    tol = tolerance(torch.float64, "gradient")
    ok = bool(((got - want).abs() <= tol.atol + tol.rtol * want.abs()).all())
    hint = "" if ok else (f"; value {float(value):.6g} vs reference {float(ref):.6g}" +
                          (f" (ratio {float(value) / float(ref):.4g}: a missing symmetric term or a wrong factor?)"
                           if float(ref) != 0 else ""))
    return _result(decl, "reference_value_and_gradient", ok,
                   f"value and prediction gradient vs {decl.reference} x {decl.scale:g}"
                   + (" over both directions" if decl.form == "pairs" else "") + hint,
                   measured=relative_error(got, want), kind="gradient", seed=seed, batch=batch)


def check_float32(decl: NonContrastiveLoss, batch: int, seed: int) -> CheckResult:
    """float32 value and gradient vs float64 on the same float32-rounded inputs."""
    p32, t32 = _draw(decl, batch, seed, torch.float32)
    p64 = [p.detach().double().requires_grad_(True) for p in p32]
    t64 = [t.detach().double().requires_grad_(True) for t in t32]
    out = []
    for preds, targets in ((p32, t32), (p64, t64)):
        value = _call(decl, preds, targets)
        grads = torch.autograd.grad(value, preds, allow_unused=True)
        out.append(torch.cat([value.detach().double().reshape(1)] +
                             [torch.zeros(p.numel(), dtype=torch.float64) if g is None else g.double().flatten()
                              for g, p in zip(grads, preds)]))
    tol = tolerance(torch.float32, "gradient")
    ok = bool(((out[0] - out[1]).abs() <= tol.atol + tol.rtol * out[1].abs()).all())
    return _result(decl, "float32_accuracy", ok, "float32 value and gradient vs float64 on the same inputs",
                   measured=relative_error(out[0], out[1]), kind="gradient", dtype=torch.float32, seed=seed,
                   batch=batch)


def check_loss(decl: NonContrastiveLoss, *, seed: int = 0, batch_sizes=BATCH_SIZES) -> list[CheckResult]:
    """Every property at every batch size."""
    return [check(decl, batch, derive_seed(seed, f"batch {batch}"))
            for batch in batch_sizes for check in (check_stop_gradient, check_reference, check_float32)]


# ---------------------------------------------------------------- with a model: the implicit term's share

class _FixedStatsBatchNorm(nn.Module):
    """Wraps a BatchNorm in training mode so that its batch statistics are detached (term (a) of §9)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.detach().mean(dims, keepdim=True)
        var = x.detach().var(dims, unbiased=False, keepdim=True)
        shape = [1, -1] + [1] * (x.dim() - 2)
        out = (x - mean) / torch.sqrt(var + self.bn.eps)
        if self.bn.affine:
            out = out * self.bn.weight.reshape(shape) + self.bn.bias.reshape(shape)
        return out


def training_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers of ``model`` that use batch statistics (training mode, or no running stats)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and (m.training or not m.track_running_stats)]


@contextmanager
def _fixed_statistics(model: nn.Module):
    swapped = []
    for name in training_batchnorms(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        swapped.append((parent, child, getattr(parent, child)))
        setattr(parent, child, _FixedStatsBatchNorm(getattr(parent, child)))
    try:
        yield
    finally:
        for parent, child, bn in swapped:
            setattr(parent, child, bn)


def implicit_term_share(model: nn.Module, loss_of_model: Callable[[], torch.Tensor], *, subject: str = "",
                        seed: int | None = None) -> CheckResult:
    """docs/THEORY.md §9 on a user's model: ``||(b)|| / (||(a)|| + ||(b)||)`` over all of the model's parameters,
    with (a) the gradient with every training-mode BatchNorm's batch statistics detached and (b) the rest.
    ``loss_of_model()`` runs one step's loss (both views, target under stop-gradient). A zero share passes with a
    warning: no implicit contrastive term, the collapse risk §9 names."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise BadInput("the model has no trainable parameters")
    norms = training_batchnorms(model)

    def grad() -> torch.Tensor:
        gs = torch.autograd.grad(loss_of_model(), params, allow_unused=True)
        return torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten() for g, p in zip(gs, params)])

    state = {k: v.clone() for k, v in model.state_dict().items()}   # running statistics: leave them as found
    full = grad()
    with _fixed_statistics(model):
        fixed = grad()
    model.load_state_dict(state)
    a, b = float(fixed.norm()), float((full - fixed).norm())
    share = b / (a + b) if a + b > 0 else 0.0
    where = ", ".join(norms) if norms else "no BatchNorm in training mode"
    if share == 0.0:
        message = (f"warning: the implicit contrastive term is zero ({where}): nothing is differentiated through batch "
                   f"statistics, the collapse risk docs/THEORY.md §9 names")
    else:
        message = f"implicit term's share of the gradient {share:.3f} through {where}"
    return CheckResult("implicit_term_share", "pass", message, measured=share, where=where, seed=seed, subject=subject)


# ---------------------------------------------------------------- the --ssl-loss hook

def load_noncontrastive(spec: str, kwargs: str | None = None) -> NonContrastiveLoss | None:
    """``--ssl-loss SPEC``: the factory's declaration when it returns a ``NonContrastiveLoss``, else None (then the
    contrastive loader takes it)."""
    made = call_factory(load_object(spec), parse_json_object(kwargs, "--ssl-loss-kwargs") or {}, spec)
    if not isinstance(made, NonContrastiveLoss):
        return None
    for batch in BATCH_SIZES:                    # an unusable loss is one usage error, not a failure per check
        preds, targets = _draw(made, batch, 0)
        _call(made, preds, targets)
    return made if made.name else NonContrastiveLoss(made.fn, made.form, made.reference, made.scale,
                                                     made.detaches_target, made.dim, spec)
