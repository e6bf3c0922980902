"""The benchmarks (theorems/test_benchmarks.py) still assert correctness: a wrong timed result is rejected."""
import pytest

from dualnet_ssl.benchmarking import LAYER, case, check_against_reference
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.operators import operator_times


def test_benchmarks_reject_a_structured_product_with_factor_one():
    net, data, _, refs = case(16, "cpu")
    with pytest.raises(IdentityViolation, match="structured vs dense"):
        check_against_reference(operator_times(net, LAYER, data), refs, "theorem3", "structured", context="width 16")


def test_benchmarks_reject_a_dense_theta_that_is_the_main_term():
    _, _, _, refs = case(16, "cpu")
    wrong = refs[("theorem4", "structured")] + refs[("theorem3", "structured")]
    with pytest.raises(IdentityViolation, match="dense vs structured"):
        check_against_reference(wrong, refs, "theorem4", "dense", context="width 16")


def test_benchmarks_reject_a_training_step_that_returns_the_wrong_loss():
    _, _, _, refs = case(16, "cpu")
    with pytest.raises(IdentityViolation, match="E\\[L\\] returned by the training step"):
        check_against_reference(float(refs[("theorem3", "train_step")]) * 1.001, refs, "theorem3", "train_step",
                                context="width 16")
