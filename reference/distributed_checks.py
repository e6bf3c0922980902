"""Checks of a gathered loss run by ``dualnet_ssl.distributed.WorkerPool`` (docs/THEORY.md §5b).

``classify_distributed_gradient`` holds every rank to the single-process rows,
``(local input gradient) / W == rows of the single-process gradient``, and the per-rank loss values to the
single-process values, and names the class of a failure (``FAULT_CLASSES``). ``check_gathered_balance`` and
``check_gathered_covariance_form`` check Theorem 2 and the covariance form of Theorem 1 on the global batch.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import torch

from dualnet_ssl.compare import assert_identity, fail, raise_failure, relative_error
from dualnet_ssl.connection import connection_kron
from dualnet_ssl.distributed import CONVENTIONS, RankResult, WorkerPool, is_distributed
from dualnet_ssl.errors import BadInput
from dualnet_ssl.operators import laplacian
from dualnet_ssl.results import CheckResult
from dualnet_ssl.thresholds import EXACT_SIGN
from dualnet_ssl.tolerances import tolerance


# ---------------------------------------------------------------- the check (docs/THEORY.md §5b)

FAULT_CLASSES = {
    "missing_gather_gradient": "no gradient from other ranks' anchors reaches this rank's rows: a gather without "
                               "gradient (plain dist.all_gather) or a GatherLayer whose backward returns its slice "
                               "without summing over ranks",
    "factor": "the gradient is off by a factor W or 1/W",
    "mispaired_positives": "positives are paired wrongly across ranks, as with a mask or labels built for one "
                           "rank's batch (no rank offset): the gathered loss's value differs from the single-process "
                           "one",
    "other": "the gradient differs from the single-process rows in no pattern of a known fault",
}
"""The fault classes a failing distributed check names, with what each means."""


@dataclass(frozen=True)
class SingleProcessReference:
    """The same loss on the whole batch with no process group (world size 1): its value ``value``, its gradient
    ``grad`` (N rows), and, per rank, the expected loss value and the rows a gradient-less gather would give."""

    value: float
    grad: torch.Tensor
    rank_values: list
    own_anchor_rows: list | None


def _loss_and_grad(fn, batch: torch.Tensor, kwargs: dict):
    x = batch.detach().clone().requires_grad_(True)
    out = fn(x, rank=0, world_size=1, **kwargs)
    loss = out["loss"] if isinstance(out, dict) else out
    (grad,) = torch.autograd.grad(loss.reshape(()), x, allow_unused=True)
    return float(loss.detach()), torch.zeros_like(x) if grad is None else grad


def single_process_reference(fn: Callable, batch: torch.Tensor, bounds: list[tuple[int, int]], *,
                             convention: str = "local_mean", kwargs: dict | None = None) -> SingleProcessReference:
    """Call ``fn`` on the whole batch as world size 1 (``gather_rows`` is then the identity).

    If ``fn`` takes ``anchors=(start, stop)`` (the loss over those anchors only, mean over them, against the
    whole batch), the per-rank values and the gradient-less-gather hypothesis are computed too.
    """
    if is_distributed():
        raise BadInput("the single-process reference must run with no process group initialised")
    if convention not in CONVENTIONS:
        raise BadInput(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    world = len(bounds)
    sizes = {stop - start for start, stop in bounds}
    if convention == "local_mean" and len(sizes) > 1:
        raise BadInput(f"shards of unequal sizes {sorted(sizes)} with the 'local_mean' convention: DDP's average of "
                       f"per-rank means weighs anchors on smaller shards more, so it never equals the global mean "
                       f"(docs/THEORY.md §5b); use equal shards or the 'global' convention")
    kwargs = dict(kwargs or {})
    value, grad = _loss_and_grad(fn, batch, kwargs)
    takes_anchors = "anchors" in inspect.signature(fn).parameters
    if not takes_anchors:
        per_rank = {"global": value, "global_times_world": world * value}.get(convention)
        return SingleProcessReference(value, grad, None if per_rank is None else [per_rank] * world, None)
    own_rows, rank_values = [], []
    for start, stop in bounds:
        own_value, own_grad = _loss_and_grad(fn, batch, {**kwargs, "anchors": (start, stop)})
        rank_values.append({"global": value, "global_times_world": world * value}.get(convention, own_value))
        # a gradient-less gather: rank r's loss reaches only its own rows through its own copy
        own_rows.append((own_grad if convention == "local_mean" else grad)[start:stop] / world)
    return SingleProcessReference(value, grad, rank_values, own_rows)


def _close(actual: torch.Tensor, expected: torch.Tensor, kind: str) -> bool:
    tol = tolerance(torch.float64, kind)
    if actual.shape != expected.shape or not bool(torch.isfinite(actual).all()):
        return False
    return bool(((actual - expected).abs() <= tol.atol + tol.rtol * expected.abs()).all())


def _fitted_factor(scaled: list, rows: list) -> float:
    a = torch.cat([s.flatten() for s in scaled])
    b = torch.cat([r.flatten() for r in rows])
    denominator = float(b @ b)
    return float(a @ b) / denominator if denominator > 0 else float("nan")


@dataclass(frozen=True)
class DistributedVerdict:
    """The check's verdict: ``fault`` is None or a key of ``FAULT_CLASSES``; ``result`` the CheckResult;
    ``factor`` the least-squares factor c of (local gradient / W) against the single-process rows."""

    fault: str | None
    result: CheckResult
    factor: float

    @property
    def ok(self) -> bool:
        return self.fault is None


def cross_rank_gradient(pool: WorkerPool, fn: Callable, batch: torch.Tensor, kwargs: dict | None = None) -> float:
    """The largest gradient entry that reaches ranks 1..W-1 when only rank 0's loss is backpropagated: 0 exactly when
    no gradient crosses the gather (the second route to the 'missing_gather_gradient' class for a black-box loss)."""
    ranks = pool.run(fn, batch, kwargs=kwargs, backward_weights=[1.0] + [0.0] * (pool.world_size - 1))
    return max((float(r.input_grad.abs().max()) for r in ranks[1:]), default=0.0)


def classify_distributed_gradient(ranks: list[RankResult], reference: SingleProcessReference, *,
                                  crossing: float | None = None, context: str = "") -> DistributedVerdict:
    """Hold every rank r to ``input_grad_r / W == reference.grad[rows_r]`` (gradient tolerance) and its loss value
    to the single-process one (exact tolerance); on failure name the class, the rank, its rows and the error.

    ``crossing`` (``cross_rank_gradient``) lets a loss without an ``anchors`` argument be classified as missing the
    gather's gradient (exactly 0 crosses); without per-rank values a wrong mean value counts as mispaired pairs."""
    world = len(ranks)
    tol = tolerance(torch.float64, "gradient")
    scaled = [r.input_grad / world for r in ranks]
    rows = [reference.grad[start:stop] for start, stop in (r.rows for r in ranks)]
    values = [torch.tensor(r.loss, dtype=torch.float64) for r in ranks]
    expected_values = (None if reference.rank_values is None
                       else [torch.tensor(v, dtype=torch.float64) for v in reference.rank_values])
    grads_ok = [_close(s, e, "gradient") for s, e in zip(scaled, rows)]
    if expected_values is None:     # local_mean without per-anchor values: DDP's mean of rank losses = global mean
        mean = torch.stack(values).mean()
        values_ok = [_close(mean, torch.tensor(reference.value, dtype=torch.float64), "exact")] * world
    else:
        values_ok = [_close(v, e, "exact") for v, e in zip(values, expected_values)]
    errors = [relative_error(s, e) if bool(torch.isfinite(s).all()) else float("inf") for s, e in zip(scaled, rows)]
    worst = max(range(world), key=lambda r: errors[r])
    factor = _fitted_factor(scaled, rows) if all(math.isfinite(e) for e in errors) else float("nan")
    fault, detail = None, ""
    if not (all(grads_ok) and all(values_ok)):
        fault, detail = _classify(world, scaled, rows, values, expected_values, values_ok, reference, crossing)
    start, stop = ranks[worst].rows
    diff = (scaled[worst] - rows[worst]).abs()
    worst_row = start + int(torch.argmax(diff.reshape(diff.shape[0], -1).amax(1))) if diff.numel() else start
    value_note = "" if expected_values is None else (
        f"; loss value on rank {worst}: {float(values[worst]):.6e} vs single-process "
        f"{float(expected_values[worst]):.6e}")
    where = f"rank {worst} of W={world}, rows [{start}, {stop}), worst row {worst_row}"
    if fault is None:
        message = (f"local input gradient / W equals the single-process rows on every rank (worst {where}, relative "
                   f"error {errors[worst]:.3e})")
    else:
        message = (f"{fault}: {FAULT_CLASSES[fault]}{detail}. Worst {where}: max abs error {float(diff.max()):.3e}, "
                   f"relative Frobenius error {errors[worst]:.3e}; fitted factor c = {factor:.6g} "
                   f"(local gradient / W = c x single-process rows){value_note}; ranks failing: "
                   f"{[r for r in range(world) if not (grads_ok[r] and values_ok[r])]}")
    message = ", ".join(p for p in (context,) if p) + (" " if context else "") + message
    result = CheckResult(check="distributed_gradient", status="pass" if fault is None else "fail", message=message,
                         measured=errors[worst], tolerance=f"rtol={tol.rtol:g}, atol={tol.atol:g}",
                         tolerance_reason=tol.reason, where=where)
    return DistributedVerdict(fault, result, factor)


def _classify(world, scaled, rows, values, expected_values, values_ok, reference, crossing) -> tuple[str, str]:
    if not all(bool(torch.isfinite(s).all()) for s in scaled):
        return "other", " (non-finite gradient)"
    if world > 1:
        for c, name in ((float(world), "W"), (1.0 / world, "1/W")):
            if all(_close(s, c * e, "gradient") for s, e in zip(scaled, rows)):
                if expected_values is not None and all(_close(v, c * e, "exact")
                                                       for v, e in zip(values, expected_values)):
                    return "factor", (f" ({name}, and the loss values too: the loss itself is scaled, e.g. averaged "
                                      f"over ranks by hand and then again by DDP)")
                return "factor", (f" ({name}, with the loss values right: the backward scales it, e.g. every rank "
                                  f"computes the global loss while its gather sends back only the local slice)")
        if all(values_ok) and reference.own_anchor_rows is not None and all(
                _close(s, o, "gradient") for s, o in zip(scaled, reference.own_anchor_rows)):
            return "missing_gather_gradient", ""
        if crossing == 0.0:
            note = "" if all(values_ok) else "; the loss values differ from the single-process ones too"
            return "missing_gather_gradient", f" (no gradient at all reaches ranks 1..W-1 from rank 0's loss{note})"
        if expected_values is not None and values_ok[0] and not all(values_ok[1:]):
            bad = [r for r in range(1, world) if not values_ok[r]]
            return "mispaired_positives", f" (the value is right on rank 0 and wrong on rank(s) {bad})"
        if expected_values is None and not values_ok[0]:
            return "mispaired_positives", (" (the mean of the ranks' loss values differs from the single-process "
                                           "value: the gathered loss forms other pairs than the loss at world size 1)")
    return "other", ""


def check_distributed_gradient(ranks: list[RankResult], reference: SingleProcessReference, *,
                               crossing: float | None = None, context: str = "") -> DistributedVerdict:
    """``classify_distributed_gradient``, raising ``IdentityViolation`` (carrying the CheckResult) on failure."""
    __tracebackhide__ = True
    verdict = classify_distributed_gradient(ranks, reference, crossing=crossing, context=context)
    if not verdict.ok:
        raise_failure(verdict.result, "distributed_gradient (docs/THEORY.md §5b)")
    return verdict


# ---------------------------------------------------------------- the theorems on the global batch

def gathered_pair_weights(ranks: list[RankResult]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(r_+, r_-, beta, beta_k) of every anchor of the global batch, read from the ranks' probes ``r_pos`` (n,)
    and ``r_neg`` (n, H) of a 'local_mean' loss: beta = n dL_r/dr_+, beta_k = -n dL_r/dr_k- (undoing the mean)."""
    for r in ranks:
        if r.probe_grads.get("r_pos") is None or r.probe_grads.get("r_neg") is None:
            raise BadInput(f"rank {r.rank} returned no gradient for the probes 'r_pos' and 'r_neg'")
    sizes = [r.rows[1] - r.rows[0] for r in ranks]
    r_pos = torch.cat([r.probes["r_pos"] for r in ranks])
    r_neg = torch.cat([r.probes["r_neg"] for r in ranks])
    beta = torch.cat([n * r.probe_grads["r_pos"] for n, r in zip(sizes, ranks)])
    beta_neg = torch.cat([-n * r.probe_grads["r_neg"] for n, r in zip(sizes, ranks)])
    return r_pos, r_neg, beta, beta_neg


def check_gathered_balance(ranks: list[RankResult], pair_loss, reference_r_pos: torch.Tensor,
                           reference_r_neg: torch.Tensor, *, context: str = "") -> None:
    """Theorem 2 over every pair of the global batch, from a distributed run (docs/THEORY.md §5, §5b).

    Evidence: the pair distances every rank formed on the gathered batch equal the single-process ones (the pairs
    are the same pairs); the weights autograd sends into them on each rank are positive, balance per anchor
    (beta = sum_k beta_k) and equal the closed forms of §5.
    """
    __tracebackhide__ = True
    where = ", ".join(p for p in (f"Theorem 2 on the gathered batch, W={len(ranks)}, loss {pair_loss}", context) if p)
    r_pos, r_neg, beta, beta_neg = gathered_pair_weights(ranks)
    assert_identity(r_pos, reference_r_pos, what="r_+ of every anchor (gathered) vs single process", context=where)
    assert_identity(r_neg, reference_r_neg, what="r_k- of every anchor (gathered) vs single process", context=where)
    for name, weights in (("beta = dL/dr_+", beta), ("beta_k = -dL/dr_k-", beta_neg)):
        if not bool((weights > 0).all()):
            row = int(torch.argmin(weights.reshape(weights.shape[0], -1).amin(1)))
            fail(f"{name} > 0", f"{int((weights <= 0).sum())} entries are not, worst at anchor (global row) {row}: "
                 f"{float(weights[row].min()):.3e}", limit=EXACT_SIGN, figure=float(weights[row].min()), context=where,
                 where=f"global row {row}")
    assert_identity(beta_neg.sum(-1), beta, kind="gradient", context=where,
                    what="balance over all pairs: sum_k beta_k vs beta per anchor of the global batch")
    closed_pos, closed_neg = pair_loss.weights(r_pos, r_neg)
    assert_identity(beta, closed_pos, kind="gradient", context=where, what="beta (gathered) vs closed form")
    assert_identity(beta_neg, closed_neg, kind="gradient", context=where, what="beta_k (gathered) vs closed form")


def pair_laplacian_form(net, pairs_input: torch.Tensor, name: str, beta: torch.Tensor, beta_neg: torch.Tensor,
                        negatives: torch.Tensor) -> torch.Tensor:
    """dL/dw_l = 2 sum_a K_l(x_a) (Lap(C) Z)_a over the 2N views a of the global batch (docs/THEORY.md §3, §5b).

    ``pairs_input`` (N, 2, d): row i's view 0 is anchor i, its view 1 the positive; negatives[i, k] names the row
    whose view 1 is anchor i's k-th negative. C holds the pair weights of the mean loss: beta_i / N on (anchor i,
    its positive), -beta_ik / N on (anchor i, negative k). K is the closed form (Kronecker), not autograd.
    """
    n = pairs_input.shape[0]
    views = pairs_input.reshape(2 * n, -1)
    anchor = 2 * torch.arange(n)
    mass = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    mass.index_put_((anchor, anchor + 1), beta / n, accumulate=True)
    mass.index_put_((anchor[:, None].expand_as(negatives), 2 * negatives + 1), -beta_neg / n, accumulate=True)
    with torch.no_grad():
        z = net(views)
    k = connection_kron(net, views, net.layer_names().index(name))       # (2N, P, n_L)
    return 2.0 * torch.einsum("bpo,bo->p", k, laplacian(mass) @ z)


def check_gathered_covariance_form(net, pairs_input: torch.Tensor, ranks: list[RankResult], single_grads: dict,
                                   negatives: torch.Tensor, *, context: str = "") -> None:
    """On a bias-free MLP, DDP's gradient (the mean of the ranks' parameter gradients) equals the single-process
    gradient and the covariance (pair-Laplacian) form of Theorem 1 over the global batch, with the pair weights that
    the distributed run itself produced (docs/THEORY.md §3, §5b). Evidence: three independent routes agree."""
    __tracebackhide__ = True
    where = ", ".join(p for p in (f"Theorem 1 on the gathered batch, W={len(ranks)}", context) if p)
    _, _, beta, beta_neg = gathered_pair_weights(ranks)
    for name in net.layer_names():
        ddp = torch.stack([r.param_grads[name] for r in ranks]).mean(0)
        assert_identity(ddp, single_grads[name], kind="gradient", context=f"{where}, layer {name}",
                        what="DDP's averaged gradient vs the single-process gradient")
        form = pair_laplacian_form(net, pairs_input, name, beta, beta_neg, negatives).reshape(ddp.shape)
        assert_identity(ddp, form, kind="gradient", context=f"{where}, layer {name}",
                        what="DDP's averaged gradient vs 2 K Lap(C) K^T w_l over the global batch")
