"""HLTM mechanism (docs/THEORY.md §8): what the covariance operator amplifies, and what recovery depends on.

The exact form (one frozen-gating step is power iteration on the selectivity) is
test_hltm.py::test_exact_operator_step_amplifies_selectivity. Here: the trained networks.
"""
import pytest

from dualnet_ssl import hltm


def test_root_selectivity_share_is_amplified(hltm_suite_runs, repro):
    """The z0-explained share of the root group's variance (w^T OP w / tr V[f] at the top layer) grows."""
    runs = hltm_suite_runs()[(0.8, True)]
    hltm.check_selectivity_amplified(runs, context=repro(case=hltm.describe_runs(runs)))


def test_naive_per_unit_form_does_not_hold(hltm_suite_runs, repro):
    """Per unit, initial |corr| predicts final |corr| but anti-predicts its gain (ceiling, regression to the mean)."""
    runs = hltm_suite_runs()[(0.8, True)]
    forms = hltm.unit_forms(runs, levels=(0, 1))
    assert forms.spearman_init_final > 0 > forms.spearman_init_gain, (
        f"per-unit forms over the two upper levels: {forms}; docs/THEORY.md §8 expects Spearman(init, final) > 0 and "
        f"Spearman(init, gain) < 0; {repro(case=hltm.describe_runs(runs))}")


def test_recovery_improves_with_overparameterisation(hltm_suite_runs, repro):
    """hid 10 against hid 2, paired over seeds (same trees and data seeds), raw and as a fraction of the ceiling."""
    better, worse = hltm_suite_runs(10)[(0.8, True)], hltm_suite_runs(2)[(0.8, True)]
    hltm.check_paired_improvement(better, worse, what="hid 10 vs hid 2", min_raw_gap=hltm.HID_MIN_RAW_GAP,
                                  min_fraction_gap=hltm.HID_MIN_FRACTION_GAP,
                                  context=repro(better=hltm.describe_runs(better), worse="hid=2"))


def test_recovery_improves_with_polarity(hltm_suite_runs, repro):
    """delta_lower 0.9 against 0.5, paired over seeds (same trees up to polarity, same initial weights)."""
    better, worse = hltm_suite_runs()[(0.9, True)], hltm_suite_runs()[(0.5, True)]
    hltm.check_paired_improvement(better, worse, what="delta_lower 0.9 vs 0.5", min_raw_gap=hltm.POLARITY_MIN_RAW_GAP,
                                  min_fraction_gap=hltm.POLARITY_MIN_FRACTION_GAP,
                                  context=repro(better=hltm.describe_runs(better), worse="delta_lower=0.5"))


def test_paired_comparison_needs_both_gaps(hltm_suite_runs, repro):
    """Sharpness: the paired check requires the raw gap AND the gap as a fraction of the ceiling; on the real
    hid 10 vs hid 2 runs, an unreachable requirement on either one alone must fail it."""
    better, worse = hltm_suite_runs(10)[(0.8, True)], hltm_suite_runs(2)[(0.8, True)]
    for raw, fraction in ((10.0, -10.0), (-10.0, 10.0)):
        with pytest.raises(hltm.IdentityViolation, match="mean paired gap"):
            hltm.check_paired_improvement(better, worse, what="hid 10 vs hid 2", min_raw_gap=raw,
                                          min_fraction_gap=fraction, context=repro(raw=raw, fraction=fraction))
