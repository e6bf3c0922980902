"""Where docs/THEORY.md is imprecise, a test proves it.

§7 defines the pair weight per negative, b(x, x') = E[beta_k | anchor x, negative x'], and
omega = (b + b^T)/2, and says "For L_simp, omega = 1" and "Any H works". For L_simp with H negatives,
beta_k = 1/H, so the literal per-negative omega is 1/H and the sheet's OP would be V[Kbar]/H: the
main term is then short by the factor H. The exact pair weight sums over the H negatives
(H * b for a loss symmetric in its negatives); dualnet_ssl.distributions.enumerate_loss uses that sum.
"""
import pytest
import torch

from dualnet_ssl import losses
from dualnet_ssl.compare import relative_error
from dualnet_ssl.distributions import gaussian_augmented
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.operators import operator_times, residue


@pytest.mark.parametrize("n_negatives", [2, 3])
def test_theory_sheet_per_negative_omega_misses_a_factor_h(n_negatives):
    net = BiasFreeMLP([6, 10, 8, 3], seed=1)
    data = gaussian_augmented(4, 2, 6, 0.3, seed=2)
    split = residue(net, "weights.1", data, losses.simple(), n_negatives)
    per_negative_mass = split.pair_mass / n_negatives          # p_i p_j b(i, j) with the sheet's b
    sheet_main = 2 * operator_times(net, "weights.1", data, per_negative_mass)
    # with the sheet's omega, theta would be (1 - 1/H) of the gradient, not 0
    assert relative_error(sheet_main, split.neg_gradient) == pytest.approx(1 - 1 / n_negatives, rel=1e-9)
    # with the summed pair weight, theta = 0 to machine precision (as Theorem 3 requires)
    assert relative_error(split.main, split.neg_gradient) < 1e-12
    assert torch.allclose(split.pair_mass, torch.full_like(split.pair_mass, 1 / 16), rtol=1e-12, atol=0)
