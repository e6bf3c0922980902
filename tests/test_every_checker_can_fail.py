"""Every checker file in theorems/ has its "this checker can fail" tests, and they really feed faults.

The rejection tests live beside the checks in theorems/ (so that `pytest theorems/` alone notices a weakened
checker). This index says, for each theorem file, where its rejection tests are; it fails when a new theorem
file appears without an entry, or when an entry's file stops asserting a rejection.
"""
from pathlib import Path

import pytest

THEOREMS = Path(__file__).resolve().parents[1] / "theorems"

REJECTIONS = {
    "test_gradient": ["test_checkers_reject", "test_sharpness"],
    "test_balance": ["test_checkers_reject", "test_balance"],
    "test_simp": ["test_checkers_reject", "test_simp", "test_sharpness"],
    "test_residue": ["test_checkers_reject", "test_residue"],
    "test_residue_training": ["test_training_checks"],
    "test_residue_invariant": ["test_residue_invariant"],
    "test_residue_bound": ["test_residue_bound"],
    "test_benchmarks": ["test_benchmark_checks"],
    "test_hltm": ["test_hltm_checkers_reject"],
    "test_hltm_mechanism": ["test_hltm_checkers_reject", "test_hltm_mechanism"],
    "test_hltm_model": ["test_hltm_checkers_reject"],
    "test_hltm_facts": ["test_hltm_checkers_reject", "test_hltm_facts"],
    "test_hltm_lower_layers": ["test_hltm_lower_layers"],
    "test_hltm_overparam": ["test_hltm_overparam"],
    "test_digits": ["test_digits"],
    "test_byol": ["test_byol"],
    "test_byol_regression": ["test_byol_regression"],
    "test_regression": ["test_regression_mutations", "test_regression_verdicts", "test_regression_conventions"],
    "test_distributed": ["test_distributed"],
    "test_regression_benchmarks": ["test_regression_verdicts"],
}
"""Theorem file -> the files holding its rejection tests."""

REJECTION_FILES = {"test_checkers_reject", "test_hltm_checkers_reject", "test_training_checks", "test_sharpness",
                   "test_tolerances", "test_benchmark_checks", "test_regression_mutations", "test_regression_verdicts",
                   "test_regression_conventions", "test_regression_faults"}
"""Files that are themselves rejection tests or tolerance pins."""

ASSERTS_A_REJECTION = ("pytest.raises(", '== "fail"', "status != \"pass\"")


def test_every_theorem_file_is_indexed():
    present = {path.stem for path in THEOREMS.glob("test_*.py")}
    missing = present - set(REJECTIONS) - REJECTION_FILES
    assert not missing, f"theorem files without an entry in REJECTIONS (where are their rejection tests?): {missing}"
    stale = (set(REJECTIONS) | REJECTION_FILES) - present
    assert not stale, f"REJECTIONS names files that no longer exist: {stale}"


@pytest.mark.parametrize("stem", sorted(REJECTIONS))
def test_rejection_tests_feed_faults(stem):
    for name in REJECTIONS[stem]:
        text = (THEOREMS / f"{name}.py").read_text()
        assert any(marker in text for marker in ASSERTS_A_REJECTION), \
            f"{name}.py, listed as rejection tests of {stem}.py, asserts no rejection"
