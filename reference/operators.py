"""Covariance operators OP_l (docs/THEORY.md §6-7): structured products, dense twins, residue, spectra.

With pair mass A (N x N; A = p p^T for the plain variance) and its symmetric Laplacian
``Lap = diag(A_s 1) - A_s``, ``A_s = (A + A^T)/2``:

    OP_l = 1/2 sum_ij A_s[i,j] (Kbar_i - Kbar_j)(Kbar_i - Kbar_j)^T = sum_ij Lap[i,j] Kbar_i Kbar_j^T.

Because ``Kbar_i^T w_l = fbar_i`` (the augmentation-mean output, by homogeneity),
``OP_l w_l = sum_i Kbar_i (Lap fbar)_i`` is ONE backward pass whose cotangent on view (i, m) is
``q_im (Lap fbar)_i``. For A = p p^T that cotangent is the centred augmentation-mean output.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dualnet_ssl.connection import connection_dense, connection_transpose_times, _param
from dualnet_ssl.distributions import DiscreteAugmentedData, enumerate_loss, view_outputs
from dualnet_ssl.errors import BadInput
from dualnet_ssl.tolerances import RANK_RELATIVE_CUTOFF


def variance_pair_mass(data: DiscreteAugmentedData) -> torch.Tensor:
    """A = p p^T: the pair mass for which OP = V_{x~p}[Kbar] (Theorem 3)."""
    return data.sample_probs[:, None] * data.sample_probs[None, :]


def laplacian(pair_mass: torch.Tensor) -> torch.Tensor:
    """Graph Laplacian of the symmetrised pair mass; PSD whenever the mass is non-negative."""
    sym = 0.5 * (pair_mass + pair_mass.T)
    return torch.diag(sym.sum(1)) - sym


def _augmentation_mean(data: DiscreteAugmentedData, per_view: torch.Tensor) -> torch.Tensor:
    return (data.aug_probs[:, :, None] * per_view).sum(1)


def _operator_cotangent(data: DiscreteAugmentedData, pair_mass: torch.Tensor, per_view: torch.Tensor) -> torch.Tensor:
    """Cotangent q_im (Lap g)_i on view (i, m), with g_i = E_aug per_view: its VJP is OP_l u when per_view = K^T u."""
    n, m = data.aug_probs.shape
    mean_out = _augmentation_mean(data, per_view.reshape(n, m, -1))          # (N, n_L)
    cotangent = data.aug_probs[:, :, None] * (laplacian(pair_mass) @ mean_out)[:, None, :]
    return cotangent.reshape(per_view.shape)


def operator_times(net: nn.Module, name: str, data: DiscreteAugmentedData, pair_mass: torch.Tensor | None = None,
                   vector: torch.Tensor | None = None) -> torch.Tensor:
    """OP_l u as a flat vector without forming K or OP (u defaults to w_l).

    u = w_l: one forward and one backward pass (Kbar^T w = fbar by homogeneity).
    Other u: a Jacobian-vector product gives Kbar^T u first.
    """
    mass = variance_pair_mass(data) if pair_mass is None else pair_mass
    w = _param(net, name)
    out = view_outputs(net, data)
    per_view = out.detach() if vector is None else connection_transpose_times(
        net, data.flat_views(), name, vector).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, w, grad_outputs=_operator_cotangent(data, mass, per_view))
    return grad.flatten()


def mean_connections(net: nn.Module, name: str, data: DiscreteAugmentedData) -> torch.Tensor:
    """Dense Kbar_l(x_i) = E_aug K_l, (N, numel(W_l), n_L). Small cases only."""
    n, m = data.aug_probs.shape
    dense = connection_dense(net, data.flat_views(), name)
    return _augmentation_mean(data, dense.reshape(n, m, -1)).reshape(n, *dense.shape[1:])


def operator_dense(net: nn.Module, name: str, data: DiscreteAugmentedData,
                   pair_mass: torch.Tensor | None = None) -> torch.Tensor:
    """Dense OP_l = sum_ij Lap[i,j] Kbar_i Kbar_j^T, (P, P): the dense twin of ``operator_times`` through the same
    Laplacian. It is symmetric, PSD (for a non-negative mass) and of rank <= (N-1) n_L *by construction*; the
    independent twin is ``operator_from_definition``."""
    mass = variance_pair_mass(data) if pair_mass is None else pair_mass
    kbar = mean_connections(net, name, data).detach()                     # (N, P, n_L)
    n, p, n_out = kbar.shape
    mixed = torch.einsum("ij,jpo->pio", laplacian(mass), kbar).reshape(p, n * n_out)
    return mixed @ kbar.permute(1, 0, 2).reshape(p, n * n_out).T          # one P x P allocation


def operator_from_definition(net: nn.Module, name: str, data: DiscreteAugmentedData,
                             pair_mass: torch.Tensor | None = None) -> torch.Tensor:
    """Dense OP_l from its definition, with closed-form K (``connection_dense``) and no Laplacian, (P, P).

    No mass: V_{x~p}[Kbar] = E[(Kbar - E Kbar)(Kbar - E Kbar)^T] (Theorem 3, docs/THEORY.md §6). A mass A:
    1/2 sum_ij A_s[i,j] (Kbar_i - Kbar_j)(Kbar_i - Kbar_j)^T (Theorem 4, §7). Small cases only.
    """
    n, m = data.aug_probs.shape
    k = connection_dense(net, data.flat_views(), name).detach()
    kbar = torch.einsum("im,impo->ipo", data.aug_probs, k.reshape(n, m, *k.shape[1:]))
    if pair_mass is None:
        centred = kbar - torch.einsum("i,ipo->po", data.sample_probs, kbar)
        return torch.einsum("i,ipo,iqo->pq", data.sample_probs, centred, centred)
    diff = kbar[:, None] - kbar[None, :]                                      # (N, N, P, n_L)
    weighted = 0.25 * (pair_mass + pair_mass.T)[:, :, None, None] * diff
    return torch.einsum("ijpo,ijqo->pq", weighted, diff)


def expected_loss_neg_gradient(net: nn.Module, name: str, data: DiscreteAugmentedData, loss, n_negatives: int = 1,
                               exclude_self: bool = False):
    """(-dE[L]/dw_l flat, EnumeratedLoss) by autograd through the exact enumeration."""
    w = _param(net, name)
    enum = enumerate_loss(data, view_outputs(net, data), loss, n_negatives, exclude_self)
    (grad,) = torch.autograd.grad(enum.expected, w)
    return -grad.flatten(), enum


@dataclass
class Residue:
    neg_gradient: torch.Tensor  # -dE[L]/dw_l
    main: torch.Tensor          # 2 OP_l w_l with the loss's pair mass
    pair_mass: torch.Tensor     # (N, N)
    expected_loss: float

    @property
    def theta(self) -> torch.Tensor:
        return self.neg_gradient - self.main

    def ratio(self) -> float:
        """||theta|| / ||2 OP w||."""
        return float(self.theta.norm() / self.main.norm().clamp_min(torch.finfo(self.main.dtype).tiny))


def residue(net: nn.Module, name: str, data: DiscreteAugmentedData, loss, n_negatives: int = 1,
            exclude_self: bool = False) -> Residue:
    """Theorem 4 split: -dE[L]/dw_l = 2 OP_l w_l + theta_l, OP_l weighted by the loss's pair mass.

    One forward pass serves both terms: -dE/dw_l and 2 OP_l w_l are two backward passes through it.
    """
    w = _param(net, name)
    out = view_outputs(net, data)
    enum = enumerate_loss(data, out, loss, n_negatives, exclude_self)
    (grad,) = torch.autograd.grad(enum.expected, w, retain_graph=True)
    mass = enum.pair_mass.detach()
    (main,) = torch.autograd.grad(out, w, grad_outputs=2 * _operator_cotangent(data, mass, out.detach()))
    return Residue(-grad.flatten(), main.flatten(), mass, float(enum.expected.detach()))


def symmetric_eigenvalues(matrix: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a symmetric matrix, ascending; refuses a non-square input."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise BadInput(f"expected a square matrix, got shape {tuple(matrix.shape)}")
    return torch.linalg.eigvalsh(0.5 * (matrix + matrix.T))


def numerical_rank(eigenvalues: torch.Tensor) -> int:
    """Count of eigenvalues above RANK_RELATIVE_CUTOFF times the largest magnitude."""
    eigenvalues = eigenvalues.detach()
    top = float(eigenvalues.abs().max())
    return int((eigenvalues > RANK_RELATIVE_CUTOFF * top).sum()) if top > 0 else 0
