"""Latent-recovery statistics of the HLTM (docs/THEORY.md §8, "Metric"): weighted moments, unit
correlations with the latents, selectivity, the best |corr| per level and its Bayes ceiling, the
explained variance share, and the per-unit forms of the mechanism."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.stats import spearmanr

def weighted_std(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Standard deviation over dim 0 under the probability weights (X,)."""
    w = weights.reshape(-1, *([1] * (values.dim() - 1)))
    mean = (w * values).sum(0)
    return ((w * (values - mean) ** 2).sum(0)).clamp_min(0).sqrt()


def _weighted_cov(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = weights[:, None, None]
    f_mean = (w * features).sum(0)
    m_mean = (weights[:, None] * posterior).sum(0)
    return (w * (features - f_mean) * (posterior - m_mean)[:, :, None]).sum(0)


def selectivity(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """E[f_k | z_mu = 1] - E[f_k | z_mu = 0] for every group mu and unit k, (n_l, hid).

    ``features`` (X, n_l, hid), ``posterior`` E[z_mu | x] (X, n_l). With P(z_mu = 1) = 1/2 this is
    exactly 4 Cov(f_k, E[z_mu | x]).
    """
    return 4 * _weighted_cov(features.double(), posterior, weights)


def unit_correlations(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """corr(f_k, z_mu) = Cov(f_k, E[z_mu | x]) / (sd f_k * 1/2) per group mu and unit k, (n_l, hid).

    Uses the posterior in place of z (same covariance, less noise) and the exact sd(z_mu) = 1/2.
    A unit that never varies has correlation 0.
    """
    features = features.double()
    sd = weighted_std(features, weights)
    cov = _weighted_cov(features, posterior, weights)
    return torch.where(sd > 0, cov / (0.5 * sd.clamp_min(torch.finfo(torch.float64).tiny)), torch.zeros_like(sd))


@dataclass(frozen=True)
class LatentRecovery:
    """Per level l = 0..L-1: unit correlations (n_l, hid), the best |corr| per latent and its ceiling."""

    correlations: list
    ceilings: list

    @property
    def best(self) -> list:
        return [c.abs().max(-1).values for c in self.correlations]

    def per_level(self) -> list:
        """The metric of docs/THEORY.md §8: per level, the mean over latents of the best |corr|."""
        return [float(b.mean()) for b in self.best]

    def fraction_of_ceiling(self) -> list:
        """Per level, the mean over latents of best |corr| / ceiling."""
        return [float((b / c).mean()) for b, c in zip(self.best, self.ceilings)]


def latent_recovery(net, data) -> LatentRecovery:
    """Correlate every group's pre-activations (a ``TreeMirrorNet``) with its own latent on the ``EvalSet``."""
    p = next(net.parameters())
    with torch.no_grad():
        pres = net.pre_activations(data.x.to(dtype=p.dtype, device=p.device))
    corrs = [unit_correlations(pre.cpu(), post, data.weights) for pre, post in zip(pres, data.posterior)]
    return LatentRecovery(corrs, data.ceilings())



def explained_share(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per group: tr V[E[f | z_mu]] / tr V[f], the share of the group's variance explained by its latent, (n_l,).

    Equals sum_k s_k^2 / 4 / sum_k Var f_k with s the selectivity. For the root group and the layer-l
    operator it is w^T OP w / tr V[f] (``check_exact_operator`` checks w^T OP w = ||S||^2/4).
    """
    s = selectivity(features, posterior, weights)
    var = weighted_std(features.double(), weights) ** 2
    return (s ** 2 / 4).sum(-1) / var.sum(-1).clamp_min(torch.finfo(torch.float64).tiny)



@dataclass(frozen=True)
class UnitForms:
    """Per-unit forms of "initial selectivity is amplified", pooled over runs and the given levels."""

    n_units: int
    spearman_init_final: float     # |corr| at init vs after training
    spearman_init_gain: float      # |corr| at init vs its gain (the naive form)
    sign_kept: float               # fraction of units whose corr keeps its sign
    best_persists: float           # fraction of latents whose most correlated unit is still the most correlated
    chance_best_persists: float    # 1 / hid


def unit_forms(results: list, levels=(0, 1)) -> UnitForms:
    """Measure the per-unit forms over the units of the given levels (docs/THEORY.md §8, the mechanism)."""
    a0, a1, kept, persists = [], [], [], []
    for r in results:
        for l in levels:
            c0, c1 = r.initial.correlations[l], r.final.correlations[l]
            a0.append(c0.abs().flatten())
            a1.append(c1.abs().flatten())
            kept.append((c0.sign() == c1.sign()).flatten())
            persists.append(c0.abs().argmax(-1) == c1.abs().argmax(-1))
    a0, a1 = torch.cat(a0).numpy(), torch.cat(a1).numpy()
    return UnitForms(len(a0), float(spearmanr(a0, a1)[0]), float(spearmanr(a0, a1 - a0)[0]),
                     float(torch.cat(kept).double().mean()), float(torch.cat(persists).double().mean()),
                     1.0 / results[0].spec.hid)
