"""Theorem 4 (docs/THEORY.md §7) on a network exactly invariant to its augmentation while K_l still varies.

There the residue is exactly 0 for L_simp, soft Triplet and InfoNCE (any H): every pair weight depends on the
samples alone. So -dE[L]/dw_l = 2 OP_l w_l pins the pair mass of the main term; the rejection tests feed the
per-negative mass (without the factor H) and a uniform mass, and break the invariance.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dualnet_ssl import losses
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.invariant import check_main_term_pins_pair_mass, connection_spread, invariant_case
from dualnet_ssl.operators import residue, variance_pair_mass
from theorems.strategies import relu_or_leaky, seeds, taus

LOSSES = {
    "simp-H2": (lambda tau: losses.simple(), 2),
    "triplet": (lambda tau: losses.triplet(tau, margin=0.1), 1),
    "infonce-H1": (lambda tau: losses.infonce(tau), 1),
    "infonce-H3": (lambda tau: losses.infonce(tau), 3),
}
invariant_widths = st.builds(lambda n0, n1, n2, out: [n0, n1, n2, out], st.integers(2, 5), st.integers(2, 6),
                             st.integers(1, 6), st.integers(1, 3))


@pytest.mark.parametrize("case", LOSSES, ids=list(LOSSES))
@given(widths=invariant_widths, slope=relu_or_leaky, seed=seeds, tau=taus, n_samples=st.integers(2, 4))
def test_residue_zero_on_invariant_network(case, widths, slope, seed, tau, n_samples, device, repro):
    make_loss, n_negatives = LOSSES[case]
    net, data = invariant_case(widths, n_samples, 3, 0.7, seed=seed, negative_slope=slope, device=device)
    for name in net.layer_names():
        check_main_term_pins_pair_mass(net, name, data, make_loss(tau), n_negatives=n_negatives,
                                       context=repro(widths=widths, slope=slope, seed=seed, tau=tau, N=n_samples))


def test_invariant_case_is_not_vacuous(seed):
    """K_1 varies with the augmentation (so the identity is about an operator on K, not on a constant)."""
    net, data = invariant_case([4, 5, 6, 3], 4, 3, 0.7, seed=seed)
    assert connection_spread(net, "weights.0", data) > 0.1, f"K_1 does not vary under augmentation (seed {seed})"


@pytest.mark.parametrize("fault", ["per-negative mass", "uniform mass"])
def test_wrong_pair_mass_is_rejected(fault, seed):
    net, data = invariant_case([4, 5, 6, 3], 4, 3, 0.7, seed=seed)
    loss, n_negatives = losses.infonce(0.5), 3
    mass = residue(net, "weights.1", data, loss, n_negatives).pair_mass
    wrong = mass / n_negatives if fault == "per-negative mass" else variance_pair_mass(data) * mass.sum()
    with pytest.raises(IdentityViolation, match=r"theta must be 0 on an invariant network"):
        check_main_term_pins_pair_mass(net, "weights.1", data, loss, n_negatives=n_negatives, pair_mass=wrong,
                                       context=f"fault={fault}, seed={seed}")


def test_residue_reappears_when_invariance_is_broken(seed):
    """Reading the dead-end unit makes the output vary, and theta is no longer 0 (so the check can fail)."""
    net, data = invariant_case([4, 5, 6, 3], 4, 3, 0.7, seed=seed)
    with torch.no_grad():
        net.weights[1][:, 0] = 1.0
    split = residue(net, "weights.1", data, losses.triplet(0.5, margin=0.1), 1)
    assert float(split.theta.norm()) > 1e-3 * float(split.main.norm()), (
        f"theta {float(split.theta.norm()):.3e} stayed 0 with the invariance broken (seed {seed})")
