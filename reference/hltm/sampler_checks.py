"""Sampling checks of the HLTM (docs/THEORY.md §8, "Exact facts"): sampled transitions, latent
correlations and leaf frequencies against the exact model, by z-scores with a Bonferroni threshold."""
from __future__ import annotations

import torch
from scipy.stats import norm

from dualnet_ssl.compare import fail
from dualnet_ssl.errors import BadInput
from dualnet_ssl.hltm.model import HLTM, enumerate_leaves
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.thresholds import Z_SCORE_FALSE_ALARM


def family_z_threshold(n_comparisons: int) -> float:
    """The z threshold that gives a family of n comparisons the false-alarm rate of ONE comparison at
    Z_SCORE_FALSE_ALARM (Bonferroni): 4.0 for one entry, about 5.3 for 512."""
    single = 2 * norm.sf(float(Z_SCORE_FALSE_ALARM))
    return float(norm.isf(single / (2 * max(int(n_comparisons), 1))))


def _check_z_scores(estimate: torch.Tensor, expected: torch.Tensor, stderr: torch.Tensor, *, what: str,
                    label, context: str) -> float:
    """Raise unless every |estimate - expected| / stderr is within ``family_z_threshold``; return the worst z.

    Entries with zero stderr (exactly determined) are skipped. ``label(i)`` names flat entry i.
    """
    __tracebackhide__ = True
    compared = stderr > 0
    z = torch.where(compared, (estimate - expected).abs() / stderr.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    limit = family_z_threshold(int(compared.sum()))
    worst = int(z.flatten().argmax())
    z_max = float(z.flatten()[worst])
    if not z_max <= limit:
        where = what + (f" [{context}]" if context else "")
        text = (f"{where}: {int((z > limit).sum())}/{int(compared.sum())} entries beyond {limit:.2f} standard errors "
                f"(one-comparison rate of {float(Z_SCORE_FALSE_ALARM):g} sigma, Bonferroni); worst {label(worst)}: "
                f"sampled {float(estimate.flatten()[worst]):.5f} vs exact {float(expected.flatten()[worst]):.5f}, "
                f"z = {z_max:.1f} (stderr {float(stderr.flatten()[worst]):.2e})")
        fail(what, text, limit=Z_SCORE_FALSE_ALARM, allowed=f"|z| <= {limit:.2f} (Bonferroni over "
             f"{int(compared.sum())})", figure=z_max, context=context, where=label(worst), text=text)
    return z_max


def _node_label(model: HLTM, flat: int) -> str:
    for level in range(model.depth + 1):
        if flat < model.level_size(level):
            return f"level {level} node {flat}"
        flat -= model.level_size(level)
    raise BadInput(f"no node {flat}")


def check_transitions(model: HLTM, latents: list, *, context: str = "") -> float:
    """Sampled P(z_child = z_parent) per edge against (1 + rho)/2, within Z_SCORE_FALSE_ALARM stderrs."""
    __tracebackhide__ = True
    n = latents[0].shape[0]
    freq = torch.cat([(latents[l] == latents[l - 1].repeat_interleave(model.branching, 1)).double().mean(0)
                      for l in range(1, model.depth + 1)])
    p = torch.cat([(1 + model.polarities[l]) / 2 for l in range(1, model.depth + 1)])
    return _check_z_scores(freq, p, (p * (1 - p) / n).sqrt(), what="P(z_child = z_parent) vs (1 + rho)/2",
                           label=lambda i: f"edge into {_node_label(model, i + 1)} (n = {n})", context=context)


def check_latent_correlation(model: HLTM, latents: list, *, context: str = "") -> float:
    """Sampled E[(2 z_a - 1)(2 z_b - 1)] for every pair of nodes against the path product of rho.

    ``latents`` as returned by ``HLTM.sample_latents``; a sample whose node labels are shuffled fails.
    """
    __tracebackhide__ = True
    s = torch.cat(latents, 1).double() * 2 - 1
    n = s.shape[0]
    if s.shape[1] != model.n_nodes:
        raise BadInput(f"latents have {s.shape[1]} nodes, {model.describe()} has {model.n_nodes}")
    measured = s.T @ s / n
    expected = model.path_correlations()
    stderr = ((1 - expected ** 2) / n).sqrt()
    return _check_z_scores(measured, expected, stderr, what="E[(2z_a-1)(2z_b-1)] vs path product of rho",
                           label=lambda i: f"pair ({_node_label(model, i // model.n_nodes)}, "
                                           f"{_node_label(model, i % model.n_nodes)}) (n = {n})", context=context)


def check_enumeration_matches_sampling(model: HLTM, n: int, *, seed: int, sampler: HLTM | None = None,
                                       context: str = "") -> float:
    """Leaf-configuration frequencies given each root value (n draws per root, from ``sampler``, default the
    model itself) against the model's enumerated p(x | z0)."""
    __tracebackhide__ = True
    exact = enumerate_leaves(model)
    sampler = model if sampler is None else sampler
    g = make_generator(seed)
    weights = 2 ** torch.arange(model.n_leaves - 1, -1, -1)
    freqs = []
    for z0 in (0, 1):
        x = sampler.sample_latents(n, g, torch.full((n,), bool(z0)))[-1].long()
        freqs.append(torch.bincount((x * weights).sum(1), minlength=2 ** model.n_leaves).double() / n)
    freq, p = torch.stack(freqs), exact.p_given_root
    return _check_z_scores(freq, p, (p * (1 - p) / n).sqrt(), what="sampled leaf frequencies vs enumerated p(x | z0)",
                           label=lambda i: f"z0 = {i // p.shape[1]}, x = {exact.x[i % p.shape[1]].long().tolist()} "
                                           f"(n = {n} per root)", context=context)

