"""Hypothesis strategies: they draw architectures, loss parameters and integer seeds, never raw weights.

Weights and data are made from the seed inside ``reference/``, so a shrunk counterexample is a small,
readable spec that rebuilds the same network.
"""
from __future__ import annotations

from hypothesis import strategies as st

seeds = st.integers(min_value=0, max_value=2**31 - 1)
relu_or_leaky = st.one_of(st.just(0.0), st.floats(min_value=0.01, max_value=0.99, allow_nan=False,
                                                   allow_infinity=False))
taus = st.floats(min_value=0.01, max_value=10.0, allow_nan=False, allow_infinity=False)
margins = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, allow_infinity=False)
PROBABILITIES = st.sampled_from(["uniform", "random", "random augmentations"])
"""Sample and augmentation probabilities of an exact distribution (``distributions.random_probabilities``)."""


@st.composite
def mlp_widths(draw, max_depth: int = 6, max_width: int = 64, min_out: int = 1):
    """[n_0, ..., n_L] with depth L in 1..max_depth and every width in 1..max_width."""
    depth = draw(st.integers(1, max_depth))
    hidden = draw(st.lists(st.integers(1, max_width), min_size=depth - 1, max_size=depth - 1))
    return [draw(st.integers(1, max_width))] + hidden + [draw(st.integers(min_out, max_width))]


@st.composite
def small_mlp_widths(draw):
    """Small MLPs for theorems that enumerate a distribution and form dense operators."""
    depth = draw(st.integers(1, 4))
    return [draw(st.integers(1, 8))] + draw(st.lists(st.integers(1, 12), min_size=depth - 1,
                                                      max_size=depth - 1)) + [draw(st.integers(1, 4))]
