"""The tolerance table is pinned, and every tolerance kind is sharp: assert_identity (and the PSD helper, for the
"eigenvalue" kind) rejects an error 10x the tolerance and accepts one of 0.1x. A tolerance loosened by a large factor
turns this file red."""
import pytest
import torch

from dualnet_ssl.checks import assert_psd
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.thresholds import (RESIDUE_MIN_FINAL_RATIO, RESIDUE_MIN_SPREAD_DROP, RESIDUE_MIN_THETA_DROP,
                                    SAMPLED_MIN_POWER, SAMPLED_TRACE_ERROR, Z_SCORE_FALSE_ALARM)
from dualnet_ssl.tolerances import _TABLE, RANK_RELATIVE_CUTOFF, tolerance

f32, f64 = torch.float32, torch.float64
PINNED = {
    (f64, "exact"): (1e-10, 1e-12), (f64, "gradient"): (1e-10, 1e-12), (f64, "eigenvalue"): (1e-9, 1e-10),
    (f32, "exact"): (1e-4, 1e-6), (f32, "gradient"): (1e-4, 1e-6), (f32, "eigenvalue"): (1e-4, 1e-5),
}
"""The table as documented (docs/THEORY.md): changing a value means changing this pin, on purpose."""


def test_tolerance_table_values_are_pinned():
    assert {key: (_TABLE[key].rtol, _TABLE[key].atol) for key in PINNED} == PINNED
    assert RANK_RELATIVE_CUTOFF == 1e-9


def test_statistical_thresholds_of_the_core_are_pinned():
    pinned = {"Z_SCORE_FALSE_ALARM": 4.0, "SAMPLED_TRACE_ERROR": 0.05, "SAMPLED_MIN_POWER": 0.99,
              "RESIDUE_MIN_THETA_DROP": 5.0, "RESIDUE_MIN_SPREAD_DROP": 2.0, "RESIDUE_MIN_FINAL_RATIO": 0.5}
    got = {"Z_SCORE_FALSE_ALARM": Z_SCORE_FALSE_ALARM, "SAMPLED_TRACE_ERROR": SAMPLED_TRACE_ERROR,
           "SAMPLED_MIN_POWER": SAMPLED_MIN_POWER, "RESIDUE_MIN_THETA_DROP": RESIDUE_MIN_THETA_DROP,
           "RESIDUE_MIN_SPREAD_DROP": RESIDUE_MIN_SPREAD_DROP, "RESIDUE_MIN_FINAL_RATIO": RESIDUE_MIN_FINAL_RATIO}
    assert {k: v.value for k, v in got.items()} == pinned
    assert all(v.seeds and v.measured and v.reason for v in got.values())


def test_statistical_thresholds_of_the_residue_and_hltm_are_pinned():
    """The rest of the core's and the HLTM's thresholds (the digits and regression sections belong to their areas)."""
    from dualnet_ssl import thresholds
    pinned = {"RESIDUE_EXCLUDE_SELF_MIN_SPREAD_DROP": 1.1, "RESIDUE_EXCLUDE_SELF_MIN_FINAL_RATIO": 0.15,
              "RESIDUE_MIN_EXPONENT": 1.3, "HLTM_RECOVERY_MIN_MEAN_ROOT_GAIN": 0.0,
              "HLTM_RECOVERY_MAX_MEAN_LEVEL_DROP": 0.01, "HLTM_RECOVERY_MAX_RUN_LEVEL_DROP": 0.06,
              "HLTM_RECOVERY_MIN_MEAN_ROOT_FRACTION": 0.91, "HLTM_SHARE_MIN_GROWTH": 1.08,
              "HLTM_HID_MIN_RAW_GAP": 0.05, "HLTM_HID_MIN_FRACTION_GAP": 0.05, "HLTM_POLARITY_MIN_RAW_GAP": 0.1,
              "HLTM_POLARITY_MIN_FRACTION_GAP": 0.02, "HLTM_OFFICIAL_MIN_MEAN_ROOT_FRACTION": 0.9}
    got = {name: getattr(thresholds, name) for name in pinned}
    assert {k: v.value for k, v in got.items()} == pinned
    assert all(v.seeds and v.measured and v.reason for v in got.values())


@pytest.mark.parametrize("dtype, kind", [key for key in _TABLE if key[1] != "eigenvalue"])
def test_assert_identity_rejects_ten_times_the_tolerance_and_accepts_a_tenth(dtype, kind):
    tol = tolerance(dtype, kind)
    expected = torch.linspace(0.5, 2.0, 7, dtype=f64)
    allowed = tol.atol + tol.rtol * expected.abs()
    assert_identity((expected + 0.1 * allowed).to(dtype), expected.to(dtype), kind=kind, what="q")
    with pytest.raises(IdentityViolation, match=f"allowed rtol={tol.rtol:g}, atol={tol.atol:g}"):
        assert_identity((expected + 10 * allowed).to(dtype), expected.to(dtype), kind=kind, what="q")
    with pytest.raises(IdentityViolation, match="mismatch in 1/7"):      # one entry off is enough
        assert_identity(torch.cat([expected[:6], expected[6:] - 10 * allowed[6:]]).to(dtype), expected.to(dtype),
                        kind=kind, what="q")


@pytest.mark.parametrize("dtype", [f64, f32])
def test_psd_helper_rejects_ten_times_the_eigenvalue_tolerance_and_accepts_a_tenth(dtype):
    tol = tolerance(dtype, "eigenvalue")
    q = torch.linalg.qr(torch.randn(5, 5, generator=make_generator(1), dtype=f64)).Q
    top = 3.0
    floor = tol.atol + tol.rtol * top

    def matrix(smallest):
        return (q @ torch.diag(torch.tensor([smallest, 0.5, 1.0, 2.0, top], dtype=f64)) @ q.T).to(dtype)
    assert_psd(matrix(-0.1 * floor), what="M")
    with pytest.raises(IdentityViolation, match="M is not PSD"):
        assert_psd(matrix(-10 * floor), what="M")
