"""The suite's own subjects for regression mode: reference losses as batch losses, and a bias-free MLP.

The pair losses of docs/THEORY.md §4 on squared distances, so the covariance form holds exactly.
"""
from __future__ import annotations

import dataclasses

from dualnet_ssl.losses import PairLoss, infonce, simple, triplet
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.regression.declarations import LossAdapter, NetAdapter
from dualnet_ssl.regression.reference_losses import PairLossBatch

def _pair_loss_adapter(pair_loss: PairLoss, name: str, scale: float = 1.0, **declares) -> LossAdapter:
    declaration = LossAdapter(lambda *a: None, name=name, **declares)
    return dataclasses.replace(declaration, fn=PairLossBatch(pair_loss, declaration, scale))

def reference_nt_xent(temperature: float = 0.5, reduction: str = "mean") -> LossAdapter:
    """SimCLR layout, -log softmax(-r/tau) of unnormalised squared distances: L_nce^tau / tau per anchor."""
    return _pair_loss_adapter(infonce(temperature), f"reference:nt_xent_sqdist(tau={temperature:g})",
                              1.0 / temperature, form="two_view", reduction=reduction, reference="infonce",
                              temperature=temperature, temperature_kwarg="temperature")

def reference_simple(reduction: str = "mean") -> LossAdapter:
    """SimCLR layout, L_simp = r_+ - mean_k r_k- per anchor."""
    return _pair_loss_adapter(simple(), "reference:simp", form="two_view", reduction=reduction)

def reference_triplet(temperature: float = 0.5, margin: float = 0.1) -> LossAdapter:
    """Per-anchor form with one paired negative: soft Triplet L_tri (docs/THEORY.md §4)."""
    return _pair_loss_adapter(triplet(temperature, margin), f"reference:triplet(tau={temperature:g}, r0={margin:g})",
                              form="per_anchor", negative_mode="paired", n_negatives=1,
                              temperature=temperature, temperature_kwarg="temperature")

def reference_mlp(widths: tuple[int, ...] = (8, 32, 32, 16), seed: int = 0) -> NetAdapter:
    """The suite's own random bias-free ReLU MLP (docs/THEORY.md §1), for the network checks by default."""
    return NetAdapter(BiasFreeMLP(widths, seed=seed), (widths[0],), f"reference:bias_free_mlp{list(widths)}")
