"""The suite's own gathered losses (L_simp, L_tri, L_nce of docs/THEORY.md §4) and the faults of issue 16.

Top-level functions, so that the engine's workers can receive them by name. A shard is ``(n, 2, D)``: row i holds
an anchor view and its positive view. Rank r's anchors are its own rows; their negatives are the second views of
every other row of the gathered batch (``H = N - 1``; L_tri takes the next row's second view, ``H = 1``).

The faults are written from the public descriptions of real bugs (issue 16), not copied from any codebase:

- ``plain_all_gather``: ``dist.all_gather`` carries no gradient; the local slice is put back so that the rank's
  own rows keep theirs (the usual pattern), and other ranks' anchors push nothing back;
- ``gather_backward_no_sum``: a GatherLayer whose backward returns its slice of the incoming gradient without
  summing it over ranks;
- ``double_averaging``: the loss is divided by W by hand, and DDP then averages the gradient over ranks again;
- ``labels_for_one_rank``: positives indexed by the local row (labels ``arange(n)``), right on rank 0 only;
- ``detached_negatives``: an undeclared ``detach()`` on the negatives (an "other" fault).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from dualnet_ssl.distributed import gather_rows, is_distributed, rank_and_world, row_offset
from dualnet_ssl.losses import infonce, pair_distance, simple, triplet
from dualnet_ssl.networks import BiasFreeMLP

FAULTS = ("plain_all_gather", "gather_backward_no_sum", "double_averaging", "labels_for_one_rank",
          "detached_negatives")


class _GatherNoSum(torch.autograd.Function):
    """The faulty GatherLayer: forward gathers, backward hands back this rank's slice without summing over ranks."""

    @staticmethod
    def forward(ctx, rows):
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows.detach().contiguous())
        ctx.rank, ctx.n = dist.get_rank(), rows.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def _plain_all_gather(rows: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, rows.detach().contiguous())     # all_gather carries no gradient
    parts[dist.get_rank()] = rows
    return torch.cat(parts)


def _gather(rows: torch.Tensor, fault: str | None) -> torch.Tensor:
    if not is_distributed():
        return rows
    if fault == "plain_all_gather":
        return _plain_all_gather(rows)
    if fault == "gather_backward_no_sum":
        return _GatherNoSum.apply(rows)
    return gather_rows(rows)


def make_pair_loss(name: str, tau: float = 0.5, margin: float = 0.3):
    """The PairLoss of docs/THEORY.md §4 by name."""
    return {"simp": simple, "infonce": lambda: infonce(tau), "triplet": lambda: triplet(tau, margin)}[name]()


def negative_indices(positive: torch.Tensor, n_total: int, loss: str) -> torch.Tensor:
    """Rows whose second view is each anchor's negative: every row but the positive's (H = N - 1), or for L_tri
    (H = 1) the next row."""
    if loss == "triplet":
        return ((positive + 1) % n_total)[:, None]
    others = torch.arange(n_total - 1)
    return others[None, :] + (others[None, :] >= positive[:, None]).long()


def pair_loss_on_views(views: torch.Tensor, *, local_rows: int, loss: str = "infonce", tau: float = 0.5,
                       margin: float = 0.3, convention: str = "local_mean", fault: str | None = None,
                       anchors: tuple[int, int] | None = None) -> dict:
    """The gathered loss on embedded views ``(n, 2, D)`` of this rank (the whole batch at world size 1)."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
    rank, world = rank_and_world()
    batch = _gather(views, fault)                          # (N, 2, D) in rank order
    n_total = batch.shape[0]
    offset = row_offset(views)
    if anchors is not None:
        idx = torch.arange(*anchors)
    elif convention == "global":
        idx = torch.arange(n_total)
    else:
        idx = offset + torch.arange(local_rows)
    positive = torch.arange(local_rows) if fault == "labels_for_one_rank" else idx
    second = batch[:, 1].detach() if fault == "detached_negatives" else batch[:, 1]
    pair = make_pair_loss(loss, tau, margin)
    negative = negative_indices(positive, n_total, loss)
    anchor_views = batch[idx, 0]
    r_pos = pair_distance(anchor_views, batch[positive, 1])
    r_neg = pair_distance(anchor_views[:, None, :], second[negative])
    value = pair(r_pos, r_neg).mean()
    if fault == "double_averaging":
        value = value / world
    return {"loss": value, "probes": {"r_pos": r_pos, "r_neg": r_neg}}


def gathered_pair_loss(shard: torch.Tensor, *, rank: int, world_size: int, anchors=None, **options) -> dict:
    """Rank ``rank``'s loss on its shard of embedded pairs ``(n, 2, D)``; ``options`` as ``pair_loss_on_views``."""
    return pair_loss_on_views(shard, local_rows=shard.shape[0], anchors=anchors, **options)


def gathered_network_loss(shard: torch.Tensor, *, rank: int, world_size: int, widths: list, net_seed: int,
                          anchors=None, **options) -> dict:
    """The same loss on the outputs of a bias-free MLP (same weights on every rank) of input pairs ``(n, 2, d)``;
    the weights are returned as parameters, so that their per-rank gradients come back."""
    net = BiasFreeMLP(widths, seed=net_seed)
    n = shard.shape[0]
    views = net(shard.reshape(2 * n, -1)).reshape(n, 2, -1)
    out = pair_loss_on_views(views, local_rows=n, anchors=anchors, **options)
    out["parameters"] = dict(net.named_parameters())
    return out


def hang_on_last_rank(shard: torch.Tensor, *, rank: int, world_size: int) -> torch.Tensor:
    """A fault: the last rank skips the gather, so the others wait in all_gather until the timeout."""
    if rank == world_size - 1:
        return (shard ** 2).sum()
    return (gather_rows(shard) ** 2).sum()


def sleep_on_rank_one(shard: torch.Tensor, *, rank: int, world_size: int, seconds: float = 3600.0) -> torch.Tensor:
    """A fault: rank 1 never returns (it blocks outside any collective), so only the parent's timeout ends it."""
    if rank == 1:
        import time
        time.sleep(seconds)
    return (shard ** 2).sum()


def raise_on_rank_one(shard: torch.Tensor, *, rank: int, world_size: int) -> torch.Tensor:
    """A fault: rank 1 raises before any collective; the others then wait in the gather."""
    if rank == 1:
        raise ValueError("rank one refuses: a deliberate fault")
    return (gather_rows(shard) ** 2).sum()


def gathered_nt_xent(shard: torch.Tensor, *, rank: int, world_size: int, tau: float = 0.2, fault: str | None = None,
                     anchors=None) -> torch.Tensor:
    """SimCLR's NT-Xent on a gathered batch (cosine similarity / tau, both views as anchors, 2N - 2 negatives),
    mean over this rank's 2n anchors ('local_mean'); ``anchors=(start, stop)`` selects rows at world size 1."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
    n = shard.shape[0]
    batch = _gather(shard, fault)                           # (N, 2, D)
    n_total = batch.shape[0]
    z = torch.nn.functional.normalize(batch, dim=-1).transpose(0, 1).reshape(2 * n_total, -1)  # views 0, then 1
    rows = torch.arange(*anchors) if anchors is not None else row_offset(shard) + torch.arange(n)
    label_rows = torch.arange(n) if fault == "labels_for_one_rank" else rows
    anchor_idx = torch.cat([rows, rows + n_total])
    positive_idx = torch.cat([label_rows + n_total, label_rows])
    logits = z[anchor_idx] @ (z.detach() if fault == "detached_negatives" else z).T / tau
    logits = logits.masked_fill(torch.nn.functional.one_hot(anchor_idx, 2 * n_total).bool(), float("-inf"))
    value = torch.nn.functional.cross_entropy(logits, positive_idx)
    return value / world_size if fault == "double_averaging" else value


def exit_on_rank_one(shard: torch.Tensor, *, rank: int, world_size: int) -> torch.Tensor:
    """A fault: rank 1's process dies (as on a segfault or an OOM kill) before returning."""
    if rank == 1:
        import os
        os._exit(3)
    return (shard ** 2).sum()
