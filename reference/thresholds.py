"""The one table of statistical thresholds, beside ``tolerances.py`` (the exact-identity table).

A tolerance bounds rounding error; a threshold bounds a *measured* claim (a residue that shrinks, latents
that are recovered, a loss that is accurate in float32). Every entry states its value, what was measured and
on which seeds, and why the value sits where it does. The seeds that set a threshold are never the seeds a
default test asserts on (docs/THEORY.md, "Seeds and thresholds").

Sections, one per area; each area's module imports its entries from here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    """A statistical threshold: ``value``, the ``measured`` figures behind it, the ``seeds`` that set it, ``reason``."""

    value: float
    measured: str
    seeds: str
    reason: str

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return f"{self.value:g} (measured: {self.measured}; seeds {self.seeds}; {self.reason})"


# ---- Monte Carlo checks (Theorem 3 sampled batches) ----

# ---- Theorem 4 residue during training (reference/training.py) ----

# ---- HLTM latent recovery (reference/hltm/) ----

# ---- digits study (reference/digits/) ----

# ---- regression mode (reference/regression/) ----
