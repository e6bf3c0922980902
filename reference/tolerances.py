"""The one tolerance table. Every comparison in the suite takes its tolerance from here.

Keyed by (dtype, kind of check). Each entry states why it has the value it has.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str

    def __str__(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g} ({self.reason})"


_TABLE: dict[tuple[torch.dtype, str], Tolerance] = {
    (torch.float64, "exact"): Tolerance(
        1e-10, 1e-12,
        "float64 identity: sums of a few thousand products lose at most ~1e-13 relative; 1e-10 "
        "leaves 1000x headroom yet catches any wrong constant or term"),
    (torch.float64, "gradient"): Tolerance(
        1e-10, 1e-12,
        "autograd vs. closed-form gradient in float64: same rounding budget as an exact identity"),
    (torch.float64, "eigenvalue"): Tolerance(
        1e-9, 1e-10,
        "eigvalsh of a PSD matrix of size <= 4096: backward error ~ n*eps*||A||, so eigenvalues "
        "that are 0 in exact arithmetic come out as O(1e-12 ||A||)"),
    (torch.float32, "exact"): Tolerance(
        1e-4, 1e-6,
        "float32 identity (user networks, GPU): eps32 = 1.2e-7 times depth and width growth"),
    (torch.float32, "gradient"): Tolerance(
        1e-4, 1e-6, "float32 autograd vs. closed form: same budget as a float32 identity"),
    (torch.float32, "eigenvalue"): Tolerance(
        1e-4, 1e-5, "float32 eigvalsh: backward error ~ n*eps32*||A||"),
    (torch.float32, "float32_accuracy"): Tolerance(
        1e-5, 1e-12,
        "a loss's float32 value or pair weights vs its own float64 on the same float32-rounded inputs, relative "
        "to their size (the value: |L| + sum |dL/dr| r, as the total may cancel): the floor under the sensitivity "
        "term (thresholds.FLOAT32_SENSITIVITY_FACTOR); 1e-5 = 84 eps32 covers a few roundings per term, while a "
        "float16 step rounds 4096x coarser than float32"),
}


def tolerance(dtype: torch.dtype, kind: str) -> Tolerance:
    """Look up the tolerance for a dtype and a kind of check ('exact', 'gradient', 'eigenvalue')."""
    try:
        return _TABLE[(dtype, kind)]
    except KeyError:
        known = sorted({k for _, k in _TABLE})
        raise KeyError(f"no tolerance for dtype={dtype}, kind={kind!r}; kinds: {known}") from None


# Statistical thresholds (z-scores, drops, gains) live in thresholds.py, not here.

RANK_RELATIVE_CUTOFF = 1e-9
"""An eigenvalue counts toward numerical rank when it exceeds this fraction of the largest one:
float64 eigvalsh leaves zero eigenvalues at about 1e-13 of the largest (measured), so 1e-9 separates
true zeros from the smallest true eigenvalues seen in our cases (>1e-6 of the largest)."""
