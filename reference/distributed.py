"""Gathered losses on torch.distributed: a real engine and the check (docs/THEORY.md §5b).

``WorkerPool(W)`` starts W real processes (``multiprocessing`` spawn, gloo on the CPU), joined through a
``TCPStore`` that the parent owns (a port already in use is retried with another). ``pool.run(fn, batch)``
hands rank r its contiguous shard of a float64 probe batch, calls ``fn(shard, rank=r, world_size=W,
**kwargs)`` there, runs backward and brings back, per rank, the loss value, the gradient on the local shard
(what autograd leaves in ``shard.grad``, through whatever gather the loss uses) and optional probes. The
pool serves many jobs; a job that fails (a rank raises, a collective times out, a rank dies) ends the pool
with every worker killed and raises ``DistributedFailure`` naming the rank; the next ``run`` starts afresh.

``fn`` must be a top-level function of an importable module: spawn pickles it by name. It returns either
the scalar loss or a dict ``{"loss": scalar, "probes": {name: tensor}, "parameters": {name: leaf}}``; a probe's
value and its gradient (``retain_grad``) come back too (the suite uses them for the pair distances and Theorem 2's
weights), and so does each parameter's gradient on that rank (DDP would average them over ranks).

Shards: ``shard_bounds(N, W)`` splits the global batch contiguously, as ``torch.tensor_split`` does (the
first ``N mod W`` ranks take one row more); explicit ``sizes`` may be unequal. ``gather_rows`` gathers
rows of unequal counts and sums the gradient over ranks in its backward.

The check, ``classify_distributed_gradient``, holds every rank to the single-process rows:
``(local input gradient) / W == rows of the single-process gradient`` (derivation: docs/THEORY.md §5b) and
the per-rank loss values to the single-process values, and names the class of a failure.
"""
from __future__ import annotations

import atexit
import datetime
import inspect
import math
import multiprocessing
import os
import queue
import socket
import time
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from dualnet_ssl.compare import assert_identity, relative_error
from dualnet_ssl.connection import connection_kron
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.operators import laplacian
from dualnet_ssl.results import CheckResult
from dualnet_ssl.tolerances import tolerance

HOST = "127.0.0.1"
CONVENTIONS = ("local_mean", "global", "global_times_world")
"""Reduction conventions: 'local_mean' = rank r's loss is the mean over its own anchors against the gathered
batch; 'global' = every rank computes the full global loss (mean over all N anchors); 'global_times_world' = every
rank computes W times the global loss (pytorch-metric-learning's DistributedLossWrapper, whose gather carries no
gradient to other ranks' rows)."""


class DistributedFailure(RuntimeError):
    """A distributed job did not complete: a rank raised, hung in a collective, or died. ``rank`` names it."""

    def __init__(self, message: str, rank: int | None = None, kind: str = "error"):
        super().__init__(message)
        self.rank = rank
        self.kind = kind          # "error", "timeout", "died", "start"


# ---------------------------------------------------------------- shards and the gather

def shard_bounds(n_rows: int, world_size: int, sizes=None) -> list[tuple[int, int]]:
    """Contiguous row ranges [start, stop) of each rank: equal up to one row (``tensor_split``), or ``sizes``."""
    n_rows, world_size = int(n_rows), int(world_size)
    if world_size < 1:
        raise BadInput(f"world_size must be >= 1, got {world_size}")
    if sizes is None:
        base, extra = divmod(n_rows, world_size)
        sizes = [base + (1 if r < extra else 0) for r in range(world_size)]
    sizes = [int(s) for s in sizes]
    if len(sizes) != world_size or sum(sizes) != n_rows or min(sizes) < 1:
        raise BadInput(f"shard sizes {sizes} must be {world_size} positive counts summing to the batch's {n_rows} rows")
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) without one."""
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _row_counts(rows: torch.Tensor) -> list[int]:
    dist = torch.distributed
    mine = torch.tensor([rows.shape[0]], dtype=torch.int64)
    counts = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, mine)
    return [int(c) for c in counts]


def _all_gather_padded(rows: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order (padded to the largest count for all_gather, then cut)."""
    dist = torch.distributed
    padded = rows.new_zeros((max(counts),) + tuple(rows.shape[1:]))
    padded[:rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:count] for part, count in zip(parts, counts)])


class _GatherRows(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradient over ranks, then returns this rank's rows."""

    @staticmethod
    def forward(ctx, rows):
        counts = _row_counts(rows)
        rank = torch.distributed.get_rank()
        ctx.span = (sum(counts[:rank]), sum(counts[:rank + 1]))
        return _all_gather_padded(rows.detach(), counts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad, op=torch.distributed.ReduceOp.SUM)
        start, stop = ctx.span
        return grad[start:stop]


def row_offset(rows: torch.Tensor) -> int:
    """The global index of this rank's first row (ranks hold contiguous shards in rank order); 0 without a group."""
    if not is_distributed():
        return 0
    return sum(_row_counts(rows)[:torch.distributed.get_rank()])


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Rows of every rank in rank order, with gradient to every rank; ``rows`` itself without a process group."""
    if not is_distributed():
        return rows
    return _GatherRows.apply(rows)


# ---------------------------------------------------------------- the engine

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def open_store(world_size: int, *, port: int | None = None, attempts: int = 5, timeout: float = 30.0):
    """The parent's TCPStore: ``port`` first if given, then free ports; a port in use is retried with another.

    Returns ``(store, port, refused)`` where ``refused`` lists the ports that were in use.
    """
    refused = []
    for attempt in range(attempts):
        candidate = port if (attempt == 0 and port is not None) else _free_port()
        try:
            store = torch.distributed.TCPStore(HOST, candidate, world_size + 1, True,
                                               datetime.timedelta(seconds=timeout), wait_for_workers=False)
            return store, candidate, refused
        except (RuntimeError, OSError):   # EADDRINUSE, or the free port was taken between probe and bind
            refused.append(candidate)
    raise DistributedFailure(f"could not open a TCPStore on {HOST}: ports {refused} were all in use", kind="start")


def _context():
    """forkserver where the platform has it (the server imports torch once; each worker is then a cheap fork of
    a clean single-threaded process), else spawn. Either way the job's function travels by name."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "torch.distributed", "dualnet_ssl.distributed"])
        return ctx
    return multiprocessing.get_context("spawn")


def _to_numpy(t: torch.Tensor | None):
    return None if t is None else t.detach().cpu().numpy().copy()


def _run_job(fn, shard: np.ndarray, rank: int, world_size: int, kwargs: dict, weight: float = 1.0) -> dict:
    x = torch.from_numpy(shard).requires_grad_(True)
    out = fn(x, rank=rank, world_size=world_size, **kwargs)
    loss, probes, params = ((out["loss"], dict(out.get("probes", {})), dict(out.get("parameters", {})))
                            if isinstance(out, dict) else (out, {}, {}))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise BadInput(f"the loss on rank {rank} returned {type(loss).__name__} "
                       f"{tuple(getattr(loss, 'shape', ()))}; expected a scalar tensor")
    for p in probes.values():
        if p.requires_grad and not p.is_leaf:
            p.retain_grad()
    (loss.reshape(()) * weight).backward()
    grad = x.grad if x.grad is not None else torch.zeros_like(x)
    return {"loss": float(loss.detach()), "input_grad": _to_numpy(grad),
            "probes": {k: _to_numpy(v) for k, v in probes.items()},
            "probe_grads": {k: _to_numpy(v.grad) if v.grad is not None else None for k, v in probes.items()},
            "param_grads": {k: _to_numpy(v.grad) if v.grad is not None else _to_numpy(torch.zeros_like(v))
                            for k, v in params.items()}}


def _worker(rank: int, world_size: int, port: int, timeout: float, jobs, results) -> None:
    """One rank: join the process group, then run jobs until told to stop or the parent is gone."""
    dist = torch.distributed
    torch.set_num_threads(1)
    try:
        store = dist.TCPStore(HOST, port, world_size + 1, False, datetime.timedelta(seconds=timeout))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout))
    except BaseException:
        results.put(("error", rank, None, traceback.format_exc()))
        return
    results.put(("ready", rank, None, os.getpid()))
    parent = os.getppid()
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:      # the parent died: leave nothing behind
                break
            continue
        if job is None:
            break
        job_id, fn, shard, kwargs, weight = job
        try:
            results.put(("done", rank, job_id, _run_job(fn, shard, rank, world_size, kwargs, weight)))
        except BaseException:
            results.put(("error", rank, job_id, traceback.format_exc()))
    try:
        dist.destroy_process_group()
    except Exception:
        pass


@dataclass(frozen=True)
class RankResult:
    """What one rank returned: its rows [start, stop) of the global batch, loss value, local input gradient,
    probe values and probe gradients."""

    rank: int
    rows: tuple[int, int]
    loss: float
    input_grad: torch.Tensor
    probes: dict = field(default_factory=dict)
    probe_grads: dict = field(default_factory=dict)
    param_grads: dict = field(default_factory=dict)


_LIVE_POOLS: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()


def _is_timeout(text: str) -> bool:
    lowered = text.lower()
    return "timed out" in lowered or "timeout" in lowered


class WorkerPool:
    """W worker processes in one gloo process group, reused across jobs; a failed job ends the pool.

    ``timeout`` (seconds) is passed to ``init_process_group`` (a collective that waits longer raises on its
    rank) and bounds each job from the parent's side (plus ``grace``), after which every worker is killed.
    """

    def __init__(self, world_size: int, *, timeout: float = 20.0, grace: float = 5.0, start_timeout: float = 120.0,
                 port: int | None = None):
        if int(world_size) < 1:
            raise BadInput(f"world_size must be >= 1, got {world_size}")
        if not timeout > 0:
            raise BadInput(f"timeout must be > 0 seconds, got {timeout}")
        self.world_size, self.timeout, self.grace = int(world_size), float(timeout), float(grace)
        self.start_timeout, self.first_port = float(start_timeout), port
        self.processes: list = []
        self.refused_ports: list[int] = []
        self.port: int | None = None
        self._store = None
        self._jobs: list = []
        self._results = None
        self._next_job = 0

    # -- lifecycle
    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    @property
    def started(self) -> bool:
        return bool(self.processes)

    def start(self) -> "WorkerPool":
        if self.started:
            return self
        ctx = _context()
        self._store, self.port, refused = open_store(self.world_size, port=self.first_port, timeout=self.start_timeout)
        self.refused_ports.extend(refused)
        self._results = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in range(self.world_size)]
        for rank in range(self.world_size):
            proc = ctx.Process(target=_worker, name=f"dualnet-rank{rank}", daemon=True,
                               args=(rank, self.world_size, self.port, self.timeout, self._jobs[rank], self._results))
            proc.start()
            self.processes.append(proc)
        _LIVE_POOLS.add(self)
        ready = set()
        deadline = time.monotonic() + self.start_timeout
        while len(ready) < self.world_size:
            status, rank, _, payload = self._next_message(deadline, waiting_for=set(range(self.world_size)) - ready,
                                                          what="joining the process group")
            if status != "ready":
                self.close()
                raise DistributedFailure(f"rank {rank} failed to join the process group:\n{payload}", rank, "start")
            ready.add(rank)
        return self

    def close(self, *, force: bool = False) -> None:
        """Stop every worker (politely unless ``force``, then terminate, then kill) and reap it; idempotent."""
        for q in self._jobs:
            try:
                q.put(None)
            except Exception:
                pass
        deadline = time.monotonic() + (0.0 if force else 3.0)
        for proc in self.processes:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.processes:
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        for q in self._jobs + ([self._results] if self._results is not None else []):
            q.close()
            q.join_thread()
        self.processes, self._jobs, self._results, self._store = [], [], None, None
        _LIVE_POOLS.discard(self)

    def __enter__(self) -> "WorkerPool":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- jobs
    def _next_message(self, deadline: float, *, waiting_for: set, what: str):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                ranks = sorted(waiting_for)
                self.close(force=True)
                raise DistributedFailure(
                    f"rank(s) {ranks} did not finish {what} within {self.timeout + self.grace:.0f} s (a rank hung, "
                    f"e.g. waiting in a collective that another rank skipped); every worker was killed",
                    ranks[0] if ranks else None, "timeout")
            try:
                return self._results.get(timeout=min(left, 0.5))
            except queue.Empty:
                dead = [r for r in waiting_for if not self.processes[r].is_alive()]
                if dead:
                    code = self.processes[dead[0]].exitcode
                    self.close(force=True)
                    raise DistributedFailure(f"rank {dead[0]} died (exit code {code}) while {what}; every worker "
                                             f"was killed", dead[0], "died")

    def run(self, fn: Callable, batch: torch.Tensor, *, sizes=None, kwargs: dict | None = None,
            timeout: float | None = None, backward_weights=None) -> list[RankResult]:
        """Run ``fn`` on every rank's shard of ``batch`` (float64, rows split contiguously); results by rank.

        ``backward_weights`` (one number per rank) multiplies each rank's loss before backward: with ``[1, 0, ...]``
        only rank 0's loss sends gradient, so what reaches the other ranks' rows crossed the gather."""
        if not isinstance(batch, torch.Tensor) or batch.dim() < 1:
            raise BadInput(f"batch must be a tensor with a row dimension, got {type(batch).__name__}")
        if batch.dtype != torch.float64:
            raise BadInput(f"the probe batch must be float64 (exact identities), got {batch.dtype}")
        if getattr(fn, "__qualname__", "<lambda>") != getattr(fn, "__name__", None) or fn.__name__ == "<lambda>":
            raise BadInput(f"{fn!r} is not a top-level function: spawn can only send a module-level function by name")
        bounds = shard_bounds(batch.shape[0], self.world_size, sizes)
        weights = [1.0] * self.world_size if backward_weights is None else [float(w) for w in backward_weights]
        if len(weights) != self.world_size:
            raise BadInput(f"backward_weights needs one number per rank ({self.world_size}), got {len(weights)}")
        self.start()
        job_id, self._next_job = self._next_job, self._next_job + 1
        data = batch.detach().cpu().numpy()
        for rank, (start, stop) in enumerate(bounds):
            self._jobs[rank].put((job_id, fn, data[start:stop].copy(), dict(kwargs or {}), weights[rank]))
        deadline = time.monotonic() + (self.timeout if timeout is None else float(timeout)) + self.grace
        done: dict[int, dict] = {}
        while len(done) < self.world_size:
            status, rank, got_id, payload = self._next_message(
                deadline, waiting_for=set(range(self.world_size)) - set(done), what=f"the loss {fn.__name__}")
            if got_id != job_id:
                continue
            if status == "error":
                self.close(force=True)
                if _is_timeout(payload):
                    raise DistributedFailure(
                        f"rank {rank} timed out in a collective after {self.timeout:g} s (another rank skipped or "
                        f"reordered a collective); every worker was killed. Rank {rank}'s traceback:\n{payload}",
                        rank, "timeout")
                raise DistributedFailure(f"the loss {fn.__name__} raised on rank {rank}; every worker was killed. "
                                         f"Rank {rank}'s traceback:\n{payload}", rank, "error")
            done[rank] = payload
        return [RankResult(rank, bounds[rank], done[rank]["loss"], torch.from_numpy(done[rank]["input_grad"]),
                           {k: torch.from_numpy(v) for k, v in done[rank]["probes"].items()},
                           {k: None if v is None else torch.from_numpy(v) for k, v in done[rank]["probe_grads"].items()},
                           {k: torch.from_numpy(v) for k, v in done[rank]["param_grads"].items()})
                for rank in range(self.world_size)]


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


def cross_rank_gradient(pool: "WorkerPool", fn: Callable, batch: torch.Tensor, kwargs: dict | None = None) -> float:
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
        f"; loss value on rank {worst}: {float(values[worst]):.6e} vs single-process {float(expected_values[worst]):.6e}")
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
        raise IdentityViolation(f"distributed_gradient (docs/THEORY.md §5b): {verdict.result.summary()}",
                                verdict.result)
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
            raise IdentityViolation(f"{name} must be > 0 [{where}]: {int((weights <= 0).sum())} entries are not, "
                                    f"worst at anchor (global row) {row}: {float(weights[row].min()):.3e}")
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
