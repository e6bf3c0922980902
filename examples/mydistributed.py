"""An example user package for the distributed check: SimCLR's NT-Xent with the embeddings gathered over ranks,
written the ways real codebases write it, and MoCo's detached gather of keys (docs/REGRESSION.md, "Distributed
training").

    pytest --ssl-loss examples.mydistributed:make_gather_layer_loss --ssl-world-size 2,4 -k distributed

The faulty variants are written from the public bug descriptions of issue 16, not copied from any codebase:
``make_no_sum_loss`` (a GatherLayer whose backward returns its slice without summing over ranks),
``make_plain_gather_loss`` (dist.all_gather, no gradient), ``make_one_rank_labels_loss`` (labels without the rank
offset).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dualnet_ssl.regression import two_view


def _group() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GatherLayer(torch.autograd.Function):
    """all_gather with gradient: backward sums the incoming gradient over ranks and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        stacked = torch.stack(grads)
        dist.all_reduce(stacked)
        return stacked[dist.get_rank()]


class GatherLayerNoSum(GatherLayer):
    """The faulty version: the backward returns this rank's slice of its own incoming gradient only."""

    @staticmethod
    def backward(ctx, *grads):
        return grads[dist.get_rank()]


def gather(x: torch.Tensor, how: str) -> torch.Tensor:
    rank, world = _group()
    if world == 1:
        return x
    if how == "layer":
        return torch.cat(GatherLayer.apply(x))
    if how == "layer_no_sum":
        return torch.cat(GatherLayerNoSum.apply(x))
    if how == "torch_nn":
        import torch.distributed.nn.functional as dist_nn
        return torch.cat(dist_nn.all_gather(x))
    if how == "plain":
        out = [torch.zeros_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous())
        out[rank] = x
        return torch.cat(out)
    raise ValueError(f"unknown gather {how!r}")


class GatheredNTXent(torch.nn.Module):
    """NT-Xent over the global batch: this rank's 2n anchors against all 2N gathered views."""

    def __init__(self, temperature: float = 0.5, how: str = "layer", rank_offset: bool = True):
        super().__init__()
        self.temperature, self.how, self.rank_offset = temperature, how, rank_offset

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        rank, world = _group()
        n = z0.shape[0]
        local = F.normalize(torch.cat([z0, z1]), dim=1)                            # (2n, D)
        every = gather(torch.stack([z0, z1]), self.how)                             # (2, N, D) per rank, catted
        every = F.normalize(every.reshape(world, 2, n, -1).transpose(0, 1).reshape(2 * world * n, -1), dim=1)
        big_n = world * n
        rows = torch.arange(n) + (rank * n if self.rank_offset else 0)
        anchors = torch.cat([rows, rows + big_n])
        logits = local @ every.T / self.temperature
        logits = logits.masked_fill(F.one_hot(anchors, 2 * big_n).bool(), float("-inf"))
        return F.cross_entropy(logits, torch.cat([rows + big_n, rows]))


def _declare(loss, temperature, world_size):
    return two_view(loss, symmetric=True, same_view_negatives=True, reduction="mean", normalises=True,
                    reference="infonce", temperature=temperature, temperature_kwarg="temperature",
                    world_size=world_size)


def make_gather_layer_loss(temperature: float = 0.5, world_size: int = 2):
    """The correct GatherLayer (backward sums over ranks)."""
    return _declare(GatheredNTXent(temperature, "layer"), temperature, world_size)


def make_torch_nn_loss(temperature: float = 0.5, world_size: int = 2):
    """torch.distributed.nn.functional.all_gather, whose backward also sums over ranks."""
    return _declare(GatheredNTXent(temperature, "torch_nn"), temperature, world_size)


def make_no_sum_loss(temperature: float = 0.5, world_size: int = 2):
    return _declare(GatheredNTXent(temperature, "layer_no_sum"), temperature, world_size)


def make_plain_gather_loss(temperature: float = 0.5, world_size: int = 2):
    return _declare(GatheredNTXent(temperature, "plain"), temperature, world_size)


def make_one_rank_labels_loss(temperature: float = 0.5, world_size: int = 2):
    return _declare(GatheredNTXent(temperature, "layer", rank_offset=False), temperature, world_size)


class MoCoKeys(torch.nn.Module):
    """MoCo's loss with in-batch keys: queries z0 against every rank's keys z1, gathered without gradient (the
    keys come from the momentum encoder, so the detach is by design)."""

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        self.temperature = temperature

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        rank, world = _group()
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1).detach()
        keys = k
        if world > 1:
            with torch.no_grad():
                parts = [torch.zeros_like(k) for _ in range(world)]
                dist.all_gather(parts, k.contiguous())
                keys = torch.cat(parts)
        labels = torch.arange(q.shape[0]) + rank * q.shape[0]
        return F.cross_entropy(q @ keys.T / self.temperature, labels)


def make_moco_loss(temperature: float = 0.2, world_size: int = 2):
    """Declared: only the queries receive gradient (gradient_to='anchors'), one direction (symmetric=False)."""
    return two_view(MoCoKeys(temperature), symmetric=False, same_view_negatives=False, reduction="mean",
                    normalises=True, gradient_to="anchors", reference="infonce", temperature=temperature,
                    temperature_kwarg="temperature", world_size=world_size)


def make_pml_loss(temperature: float = 0.5, efficient: bool = False, world_size: int = 2):
    """pytorch-metric-learning's ``DistributedLossWrapper(NTXentLoss)``, used as its docs say: labels unique over
    the global batch (this rank's offset added). It gathers without gradient and multiplies the global loss by W
    (``efficient=False``), or puts only the local anchors against the gathered batch (``efficient=True``, which
    its docs say does not reproduce the single-process gradient)."""
    from pytorch_metric_learning.losses import NTXentLoss
    from pytorch_metric_learning.utils.distributed import DistributedLossWrapper

    wrapped = DistributedLossWrapper(NTXentLoss(temperature=temperature), efficient=efficient)

    def loss(z0, z1):
        rank, _ = _group()
        labels = torch.arange(z0.shape[0]) + rank * z0.shape[0]
        return wrapped(torch.cat([z0, z1]), torch.cat([labels, labels]))
    return two_view(loss, symmetric=True, same_view_negatives=True, reduction="mean", normalises=True,
                    reference="infonce", temperature=temperature, temperature_kwarg="temperature",
                    world_size=world_size,
                    distributed_convention="local_mean" if efficient else "global_times_world")
