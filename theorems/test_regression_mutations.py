"""The regression mode catches real bugs and passes correct code (catalogue: theorems/regression_mutants.py).

Every mutant keeps the declaration of the correct loss (SimCLR layout, cosine, mean, NT-Xent at tau); only
its code is wrong, and it must fail the property listed for it, with a message that names that property.
Every correct variant (chunked, upcast, masked with a large negative, manual log-sum-exp) and the unmutated
loss must pass every property. Declarations are checked too: a loss declared with a layout it does not have
fails ``declared_pairs`` (or ``balance_per_anchor``), and the same loss declared as it is passes.
The sweeps over many seeds and temperatures are ``slow`` (--runslow); a fast draw runs by default.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualnet_ssl import regression
from dualnet_ssl.results import CheckResult
from theorems.regression_mutants import CORRECT, DECLARED, MUTATIONS, mutant


def run_all(subject: regression.LossSubject, seed: int) -> dict[str, CheckResult]:
    return {prop: regression.check_loss(subject, prop, seed) for prop in regression.LOSS_PROPERTIES}


def _flagged(bug: str, tau: float, seed: int) -> CheckResult:
    return regression.check_loss(mutant(bug, tau), MUTATIONS[bug], seed)


TEMPERATURES = st.sampled_from([0.05, 0.1, 0.2, 0.5])
"""Below 1: at tau = 1 "temperature applied twice" is no bug at all."""
SEEDS = st.integers(min_value=0, max_value=2 ** 31 - 1)


@pytest.mark.parametrize("bug", sorted(MUTATIONS))
def test_mutant_is_flagged_by_its_property(bug, seed, repro):
    prop = MUTATIONS[bug]
    result = _flagged(bug, 0.5, seed)
    assert result.status == "fail", f"mutation '{bug}' was not flagged by {prop}: {result.summary()}; {repro(bug=bug)}"
    assert result.summary().startswith(f"{prop} FAILED"), f"message does not name {prop}: {result.summary()}"
    assert result.record()["status"] == "fail" and result.message, f"record lacks its verdict: {result.record()}"


@pytest.mark.parametrize("variant", CORRECT)
def test_correct_variant_passes_every_property(variant, seed, repro):
    results = run_all(mutant(None if variant == "plain" else variant, 0.2), seed)
    failed = [r.summary() for r in results.values() if r.status == "fail"]
    assert not failed, f"false alarms on the correct variant '{variant}': {failed}; {repro(variant=variant)}"
    assert results["stability_float32"].status == "pass" and results["reference_value"].status == "pass", results


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_declaration_is_checked_against_the_weights(name, seed, repro):
    subject, prop = DECLARED[name]
    results = run_all(subject, seed)
    failed = {p: r.summary() for p, r in results.items() if r.status == "fail"}
    if prop is None:
        assert not failed, f"false alarms on '{name}', declared as it is: {failed}; {repro(case=name)}"
    else:
        assert prop in failed, f"'{name}' not flagged by {prop}: {results[prop].summary()}; {repro(case=name)}"


def test_the_weights_name_the_layout_they_fit(seed):
    """A one-directional loss declared symmetric is named as such, not merely failed."""
    for name, says in (("one_directional_declared_simclr", "one-directional"),
                       ("one_directional_declared_symmetric", "one-directional"),
                       ("cross_view_declared_same_view", "without same-view negatives")):
        result = regression.check_loss(DECLARED[name][0], "declared_pairs", seed)
        assert result.status == "fail" and f"the weights say {says}" in result.message, result.summary()


@pytest.mark.slow
@settings(max_examples=10)
@given(seed=SEEDS, tau=TEMPERATURES)
def test_every_mutant_is_flagged_at_any_seed_and_temperature(seed, tau):
    missed = {bug: r.summary() for bug in MUTATIONS if (r := _flagged(bug, tau, seed)).status != "fail"}
    assert not missed, f"mutants not flagged at seed={seed}, tau={tau}: {missed}"


@given(seed=SEEDS, tau=TEMPERATURES)
@settings(max_examples=2)
def test_batch_size_and_precision_mutants_are_flagged_at_any_seed(seed, tau):
    """The fast draw of the sweep above, for the classes the small probe alone would miss."""
    bugs = ("chunked_mask", "capped_negatives", "half_precision", "mean_over_capped_count")
    missed = {bug: r.summary() for bug in bugs if (r := _flagged(bug, tau, seed)).status != "fail"}
    assert not missed, f"mutants not flagged at seed={seed}, tau={tau}: {missed}"


@pytest.mark.slow
@pytest.mark.parametrize("tau", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("variant", CORRECT)
def test_false_alarm_sweep_over_20_seeds(variant, tau):
    """0 false alarms: every correct variant, every property, 20 seeds (seeds 1000-1019, not the calibration's)."""
    failed = [r.summary() for seed in range(1000, 1020)
              for r in run_all(mutant(None if variant == "plain" else variant, tau), seed).values()
              if r.status == "fail"]
    assert not failed, f"{len(failed)} false alarms on '{variant}' at tau={tau}: {failed[:3]}"
