"""Theorem 2 (docs/THEORY.md §5): the common property of L_simp, L_tri and L_nce.

For r_+ = r(x, x+) and r_k- = r(x, x_k-), k = 1..H, every loss satisfies
beta := dL/dr_+ > 0, dL/dr_k- < 0 for every k, and dL/dr_+ + sum_k dL/dr_k- = 0,
with closed forms beta = 1 (L_simp), sigmoid((r_+ - r_- + r_0)/tau) (L_tri), and
beta_k = e^{-r_k-/tau}/Z, beta = 1 - e^{-r_+/tau}/Z (L_nce). Autograd confirms all of them.

Distances are drawn as tau * u with u in [0, 30]: exp(-30) = 9e-14 keeps every weight representable
in float64 (beyond ~37 the positive weight 1 - e^{-r_+/tau}/Z rounds to exactly 0 although it is > 0).
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dualnet_ssl import losses
from dualnet_ssl.checks import check_balance
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.seeding import make_generator
from theorems.strategies import margins, seeds, taus

MAX_SCALED_DISTANCE = 30.0


def _distances(seed, n_tuples, n_negatives, tau, device):
    g = make_generator(seed)
    u = torch.rand(n_tuples, 1 + n_negatives, generator=g, dtype=torch.float64) * MAX_SCALED_DISTANCE
    r = (tau * u).to(device)
    return r[:, 0], r[:, 1:]


@given(n_negatives=st.integers(1, 16), seed=seeds)
def test_balance_simp(n_negatives, seed, device, repro):
    r_pos, r_neg = _distances(seed, 64, n_negatives, 1.0, device)
    check_balance(losses.simple(), r_pos, r_neg, context=repro(H=n_negatives, seed=seed))


@given(tau=taus, margin=margins, seed=seeds)
def test_balance_triplet(tau, margin, seed, device, repro):
    r_pos, r_neg = _distances(seed, 64, 1, tau, device)
    check_balance(losses.triplet(tau, margin), r_pos, r_neg, context=repro(tau=tau, margin=margin, seed=seed))


@given(tau=taus, n_negatives=st.integers(1, 16), seed=seeds)
def test_balance_infonce(tau, n_negatives, seed, device, repro):
    r_pos, r_neg = _distances(seed, 64, n_negatives, tau, device)
    check_balance(losses.infonce(tau), r_pos, r_neg, context=repro(tau=tau, H=n_negatives, seed=seed))


@given(tau=taus, seed=seeds)
def test_balance_triplet_equals_infonce_only_at_one_negative_and_zero_margin(tau, seed, device, repro):
    """docs/THEORY.md §4 trap: with H = 1 and r_0 = 0 the two losses coincide; a margin or a second negative
    tells them apart, so the Triplet and InfoNCE checkers test different losses."""
    r_pos, r_neg = _distances(seed, 64, 2, tau, device)
    context = repro(tau=tau, seed=seed)
    same = losses.triplet(tau, 0.0)(r_pos, r_neg[:, :1]), losses.infonce(tau)(r_pos, r_neg[:, :1])
    torch.testing.assert_close(same[0], same[1], msg=lambda m: f"L_tri(r_0=0) != L_nce(H=1): {m} [{context}]")
    gaps = {
        "margin r_0 = 0.5 * tau": losses.triplet(tau, 0.5 * tau)(r_pos, r_neg[:, :1]) - losses.infonce(tau)(
            r_pos, r_neg[:, :1]),
        "H = 2": losses.infonce(tau)(r_pos, r_neg) - losses.infonce(tau)(r_pos, r_neg[:, :1]),
    }
    for what, gap in gaps.items():
        assert bool((gap.abs() > 0).all()), f"L_tri and L_nce should differ with {what} [{context}]"


def test_balance_rejects_a_loss_that_ignores_a_negative(repro):
    """Sharpness: L = r_+ - r_1- with H = 2 balances (1 = 1 + 0) but gives the second negative no push, so every
    dL/dr_k- < 0 must fail on it; a checker that allowed dL/dr_k- = 0 would pass it."""
    r_pos, r_neg = _distances(0, 16, 2, 1.0, "cpu")
    with pytest.raises(IdentityViolation, match=r"dL/dr_k- must be < 0"):
        check_balance(lambda rp, rn: rp - rn[..., 0], r_pos, r_neg, context=repro(H=2))
