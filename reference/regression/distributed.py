"""The regression property ``distributed_gradient``: the user's gathered loss in W real processes (docs/REGRESSION.md,
"Distributed training"; the theory is docs/THEORY.md §5b).

Each rank's worker builds the user's loss from its ``pkg.mod:factory`` spec itself (so closures and modules work),
receives its contiguous shard of a float64 probe batch of pairs and calls ``loss(z0, z1)`` there; the user's own
gather code runs unchanged in a gloo process group. The single-process reference is the same loss in a process
group of one (world size 1), so a gather that needs an initialised group still runs. Every rank's gradient / W is
held to the reference rows and the loss values to the reference value, at two global batch sizes (4W and 5W rows);
a failure names its class (``dualnet_ssl.distributed.FAULT_CLASSES``), the rank, the rows and the error.
"""
from __future__ import annotations

import sys

import torch

from dualnet_ssl.distributed import (CONVENTIONS, DistributedFailure, SingleProcessReference, WorkerPool,
                                     classify_distributed_gradient, cross_rank_gradient)
from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.loading import LossSubject, load_object
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import derive_seed, make_generator

DISTRIBUTED_PROPERTY = "distributed_gradient"
ROWS_PER_RANK = (4, 5)
"""Rows per rank of the two probe batches: two global sizes, so a mask hard-coded for one batch size shows."""
PROBE_DIM = 8
POSITIVE_NOISE = 0.3
_POOLS: dict[int, WorkerPool] = {}


def parse_world_sizes(text) -> tuple[int, ...]:
    """``--ssl-world-size 2,4`` -> (2, 4); ``BadInput`` unless every entry is an integer >= 2."""
    if isinstance(text, int):
        text = str(text)
    try:
        sizes = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise BadInput(f"--ssl-world-size takes integers >= 2 separated by commas, e.g. '2,4'; got {text!r}") from None
    if not sizes or min(sizes) < 2:
        raise BadInput(f"--ssl-world-size takes integers >= 2 separated by commas, e.g. '2,4'; got {text!r}")
    return sizes


def declared_world_sizes(subject: LossSubject, option) -> tuple[int, ...]:
    """The world sizes to run: the option's, else the declaration's ``world_size``, else none."""
    if option:
        return parse_world_sizes(option)
    declared = subject.build().world_size
    return () if declared is None else parse_world_sizes(declared)


def pool(world_size: int) -> WorkerPool:
    """One pool per world size for the session (closed at exit, or by ``close_pools``)."""
    if world_size not in _POOLS:
        _POOLS[world_size] = WorkerPool(world_size, timeout=60.0)
    return _POOLS[world_size]


def close_pools() -> None:
    for p in _POOLS.values():
        p.close()
    _POOLS.clear()


def user_loss_job(shard: torch.Tensor, *, rank: int, world_size: int, spec: str, kwargs: dict, declares: dict | None,
                  path: list) -> torch.Tensor:
    """In a worker: build the user's loss from its factory and call it on this rank's pairs ``(n, 2, D)``."""
    for entry in path:
        if entry not in sys.path:
            sys.path.append(entry)
    adapter = LossSubject(spec, load_object(spec), kwargs, declares).build()
    return adapter.fn(shard[:, 0], shard[:, 1])


def probe_pairs(seed: int, n_rows: int, dim: int, unit: bool) -> torch.Tensor:
    """Float64 pairs (n_rows, 2, dim): a positive near its anchor; unit rows for a loss defined on them."""
    g = make_generator(derive_seed(seed, "distributed-probe"))
    anchors = torch.randn(n_rows, dim, generator=g, dtype=torch.float64)
    pairs = torch.stack([anchors, anchors + POSITIVE_NOISE * torch.randn(n_rows, dim, generator=g,
                                                                         dtype=torch.float64)], 1)
    return torch.nn.functional.normalize(pairs, dim=-1) if unit else pairs / dim ** 0.5


def _reference(job_kwargs: dict, batch: torch.Tensor, bounds, convention: str) -> SingleProcessReference:
    (single,) = pool(1).run(user_loss_job, batch, kwargs=job_kwargs)
    world = len(bounds)
    per_rank = {"global": single.loss, "global_times_world": world * single.loss}.get(convention)
    rank_values = None if per_rank is None else [per_rank] * world
    return SingleProcessReference(single.loss, single.input_grad, rank_values, None)


def check_distributed(subject: LossSubject, world_size: int, seed: int) -> CheckResult:
    """distributed_gradient of the user's loss at ``world_size``: pass, fail (with the class) or not applicable."""
    adapter = subject.build()
    prop = f"{DISTRIBUTED_PROPERTY}_W{world_size}"
    if adapter.form != "two_view" or adapter.output != "loss" or adapter.reduction == "none":
        return CheckResult(prop, "not_applicable", f"the distributed check calls loss(z0, z1) on each rank's pairs "
                           f"and backpropagates one scalar per rank; this loss is declared form={adapter.form!r}, "
                           f"output={adapter.output!r}, reduction={adapter.reduction!r}", seed=seed,
                           subject=subject.name)
    convention = adapter.distributed_convention
    if convention not in CONVENTIONS:
        raise BadInput(f"loss declaration: distributed_convention={convention!r} is not one of {CONVENTIONS}")
    job_kwargs = {"spec": subject.name, "kwargs": dict(subject.kwargs), "declares": subject.declares,
                  "path": list(sys.path)}
    last = None
    for rows_per_rank in ROWS_PER_RANK:
        n_rows = world_size * rows_per_rank
        if adapter.batch_size is not None and adapter.batch_size != n_rows:
            continue
        batch = probe_pairs(seed + rows_per_rank, n_rows, adapter.dim or PROBE_DIM, adapter.on_unit_rows)
        bounds = [(r * rows_per_rank, (r + 1) * rows_per_rank) for r in range(world_size)]
        try:
            reference = _reference(job_kwargs, batch, bounds, convention)
            ranks = pool(world_size).run(user_loss_job, batch, kwargs=job_kwargs)
            # a gather detached by design (MoCo's keys) sends nothing across ranks: no evidence of a fault there
            routed = adapter.gradient_to == "anchors" or adapter.detached_negatives
            crossing = None if routed else cross_rank_gradient(pool(world_size), user_loss_job, batch, job_kwargs)
        except DistributedFailure as err:
            return CheckResult(prop, "fail", f"the loss did not complete at W={world_size}, N={n_rows}: {err}",
                               seed=seed, subject=subject.name, where=f"rank {err.rank}")
        verdict = classify_distributed_gradient(ranks, reference, crossing=crossing,
                                                context=f"W={world_size}, N={n_rows} ({convention}):")
        last = verdict.result
        if not verdict.ok:
            break
    if last is None:
        return CheckResult(prop, "not_applicable", f"the declared batch_size={adapter.batch_size} is not "
                           f"{ROWS_PER_RANK} rows per rank at W={world_size}", seed=seed, subject=subject.name)
    return CheckResult(prop, last.status, last.message, last.measured, last.tolerance, last.tolerance_reason,
                       last.where, seed, subject.name)
