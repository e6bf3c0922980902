"""Theorem 4's residue in closed form, and a bound on it by the augmentation spread (docs/THEORY.md §7,
"The residue, exactly, and its bound").

For H = 1, with per-tuple weight beta (dL/dr_+ = beta = -dL/dr_-, Theorem 2), connections K and outputs f of the
anchor (1), positive (2) and negative (3) views, and deviations from the augmentation means
dK = K - Kbar, df = f - fbar:

    theta_l = E[ beta ( DKbar (df1 - df3) + (dK1 - dK3)(f1 - f3) ) ] - E[ beta (K1 - K2)(f1 - f2) ],

where DKbar = Kbar(anchor's sample) - Kbar(negative's sample). By the triangle inequality and ||A v|| <= ||A||_2 ||v||:

    ||theta_l|| <= E[ beta ( ||DKbar||_2 ||df1 - df3|| + ||dK1 - dK3||_2 ||f1 - f3|| + ||K1 - K2||_2 ||f1 - f2|| ) ].

Every term carries a deviation under augmentation (df, dK, or a positive pair's difference), so the bound is
0 without augmentation and grows with the augmentation spread of K_l and of the outputs. Built by enumerating
the tuples with dense closed-form K (``connection_dense``) and the loss's closed-form weights: an independent
route from ``operators.residue`` (autograd through the enumerated loss, structured main term). Small cases only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dualnet_ssl.connection import connection_dense
from dualnet_ssl.distributions import DiscreteAugmentedData, view_outputs
from dualnet_ssl.compare import fail, passed
from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import PairLoss
from dualnet_ssl.results import CheckResult
from dualnet_ssl.thresholds import EXACT_FINITE
from dualnet_ssl.tolerances import Tolerance


@dataclass(frozen=True)
class ResidueByTuples:
    theta: torch.Tensor   # the closed form above, flat (P,)
    bound: float          # the right-hand side of the inequality


def residue_by_tuples(net, name: str, data: DiscreteAugmentedData, loss: PairLoss) -> ResidueByTuples:
    """theta_l and its bound by enumerating (anchor view, positive view, negative view) tuples, H = 1."""
    n, m = data.aug_probs.shape
    with torch.no_grad():
        f = view_outputs(net, data)                                              # (N, M, n_L)
    k = connection_dense(net, data.flat_views(), name).detach()
    k = k.reshape(n, m, *k.shape[1:])                                            # (N, M, P, n_L)
    q = data.aug_probs
    kbar = torch.einsum("im,impo->ipo", q, k)
    fbar = torch.einsum("im,imo->io", q, f)
    dk, df = k - kbar[:, None], f - fbar[:, None]
    theta = torch.zeros(k.shape[2], dtype=k.dtype, device=k.device)
    bound = 0.0
    for i in range(n):
        for j in range(n):
            for a in range(m):             # anchor view of sample i
                for b in range(m):         # positive view of sample i
                    for c in range(m):     # negative view of sample j
                        p = data.sample_probs[i] * q[i, a] * q[i, b] * data.sample_probs[j] * q[j, c]
                        r_pos = 0.5 * (f[i, a] - f[i, b]).square().sum()
                        r_neg = 0.5 * (f[i, a] - f[j, c]).square().sum()
                        beta, beta_neg = loss.weights(r_pos, r_neg[None])
                        if not torch.allclose(beta, beta_neg[0]):
                            raise BadInput(f"residue_by_tuples needs H = 1 with balanced weights; loss {loss}")
                        d_kbar, d_dk = kbar[i] - kbar[j], dk[i, a] - dk[j, c]
                        d_df, f_neg, k_pos = df[i, a] - df[j, c], f[i, a] - f[j, c], k[i, a] - k[i, b]
                        f_pos = f[i, a] - f[i, b]
                        theta += p * beta * (d_kbar @ d_df + d_dk @ f_neg - k_pos @ f_pos)
                        bound += float(p * beta * (torch.linalg.matrix_norm(d_kbar, 2) * d_df.norm()
                                                   + torch.linalg.matrix_norm(d_dk, 2) * f_neg.norm()
                                                   + torch.linalg.matrix_norm(k_pos, 2) * f_pos.norm()))
    return ResidueByTuples(theta, bound)


def check_residue_bound(theta_norm: float, bound: float, *, slack: Tolerance, context: str = "") -> CheckResult:
    """Theorem 4's residue bound: ||theta_l|| <= bound, up to the relative rounding ``slack.rtol`` (a tolerance from
    the table); the passing record's figure is the tightness ||theta|| / bound."""
    __tracebackhide__ = True
    check = "||theta_l|| <= its bound by the augmentation spread"
    if not (math.isfinite(theta_norm) and math.isfinite(bound)):
        fail(check, f"non-finite figure (||theta|| {theta_norm}, bound {bound})", limit=EXACT_FINITE,
             allowed="finite", figure=float("nan"), context=context,
             text=f"the residue bound got a non-finite figure (||theta|| {theta_norm}, bound {bound}) [{context}]")
    allowed = f"||theta|| <= bound * (1 + {slack.rtol:g})"
    if theta_norm > bound * (1 + slack.rtol):
        fail(check, f"||theta_l|| = {theta_norm:.6e} exceeds its bound {bound:.6e}", limit=slack, allowed=allowed,
             figure=theta_norm / bound, context=context,
             text=f"||theta_l|| = {theta_norm:.6e} exceeds its bound {bound:.6e} by the augmentation spread "
                  f"(docs/THEORY.md §7) [{context}]; allowed relative slack {slack.rtol:g}")
    return passed(check, limit=slack, allowed=allowed, figure=theta_norm / bound if bound > 0 else 0.0,
                  context=context, message="tightness ||theta|| / bound")
