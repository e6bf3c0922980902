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

The checks that read these results live in ``dualnet_ssl.distributed_checks`` (docs/THEORY.md §5b).
"""
from __future__ import annotations

import atexit
import datetime
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

from dualnet_ssl.errors import BadInput

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
        except Exception:                   # the job could not be unpickled here (e.g. fn's module is not importable)
            results.put(("error", rank, None, "the job could not be received by this worker:\n"
                         + traceback.format_exc()))
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


def still_running(pids) -> list[int]:
    """The processes among ``pids`` that still exist (``os.kill(pid, 0)``; psutil is not needed)."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def _tensors(arrays: dict) -> dict:
    return {k: None if v is None else torch.from_numpy(v) for k, v in arrays.items()}


def _rank_result(rank: int, rows: tuple[int, int], payload: dict) -> RankResult:
    """A worker's numpy payload as a RankResult."""
    tensors = _tensors
    return RankResult(rank, rows, payload["loss"], torch.from_numpy(payload["input_grad"]), tensors(payload["probes"]),
                      tensors(payload["probe_grads"]), tensors(payload["param_grads"]))


_LIVE_POOLS: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()


def _is_timeout(text: str) -> bool:
    """gloo's message for a collective that waited past the process group's timeout ("Timed out waiting ...")."""
    return "timed out" in text.lower()


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
            if got_id != job_id and not (status == "error" and got_id is None):
                continue
            if status == "error":
                self.close(force=True)
                if _is_timeout(payload):
                    raise DistributedFailure(
                        f"rank {rank} timed out in a collective after {self.timeout:g} s (another rank skipped or "
                        f"reordered a collective); every worker was killed. Rank {rank}'s traceback:\n{payload}",
                        rank, "timeout")
                if got_id is None:
                    raise DistributedFailure(
                        f"rank {rank} could not receive the job: is {fn.__module__}.{fn.__name__} importable in the "
                        f"workers (they share the sys.path the first pool started with)? Every worker was killed. "
                        f"Rank {rank}'s traceback:\n{payload}", rank, "error")
                raise DistributedFailure(f"the loss {fn.__name__} raised on rank {rank}; every worker was killed. "
                                         f"Rank {rank}'s traceback:\n{payload}", rank, "error")
            done[rank] = payload
        return [_rank_result(rank, bounds[rank], done[rank]) for rank in range(self.world_size)]
