"""The regression mode catches real bugs: a catalogue of mutated NT-Xent losses, each flagged by name.

Every mutant keeps the declaration of the correct loss (SimCLR layout, cosine, mean, NT-Xent at tau);
only its code is wrong. Each must fail the property listed for it, with a message that names that
property; the unmutated loss must pass every property at the same seeds and temperatures.
"""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from dualnet_ssl import regression
from dualnet_ssl.regression import LossSubject, two_view
from dualnet_ssl.results import CheckResult

POSITIVE_PULL = 0.5
"""Strength of the extra pull on positives (the official code's beta != 0 option, THEORY.md §5)."""

MUTATIONS = {
    "self_unmasked": "balance_total",           # self-similarity left in the softmax
    "wrong_diagonal": "weight_signs",           # positives taken from the wrong diagonal
    "temperature_twice": "reference_value",     # logits divided by tau twice
    "detached_negatives": "gradient_symmetry",  # negatives' similarities detached
    "blockwise_logsumexp": "reference_value",   # one log-sum-exp per block of negatives
    "sum_not_mean": "reference_value",          # sum over anchors where the adapter declares mean
    "extra_logit": "balance_total",             # a constant extra logit in the denominator
    "positive_pull": "balance_total",           # an extra pull on positives only
    "dot_product": "pairwise_structure",        # unnormalised dot product in a loss that claims cosine
    "no_max_subtraction": "stability_float32",  # exp of logits without subtracting the maximum
}


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, stable: bool) -> torch.Tensor:
    if stable:
        return F.cross_entropy(logits, targets, reduction="none")
    probs = logits.exp() / logits.exp().sum(1, keepdim=True)
    return -probs.gather(1, targets[:, None])[:, 0].log()


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, *, tau: float, bug: str | None = None) -> torch.Tensor:
    """SimCLR's NT-Xent over 2N anchors, with at most one bug from MUTATIONS switched on."""
    n = z0.shape[0]
    z = torch.cat([z0, z1])
    if bug != "dot_product":
        z = F.normalize(z, dim=1)
    pair = torch.arange(2 * n)
    positive = (pair + n + (1 if bug == "wrong_diagonal" else 0)) % (2 * n)
    keep = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
    keep[pair, (pair + n) % (2 * n)] = True
    sim = z @ z.T
    if bug == "detached_negatives":
        sim = torch.where(keep, sim, z @ z.detach().T)
    logits = sim / tau / (tau if bug == "temperature_twice" else 1.0)
    if bug != "self_unmasked":
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    if bug == "extra_logit":
        logits = torch.cat([logits, torch.zeros(2 * n, 1, dtype=logits.dtype)], dim=1)
    stable = bug != "no_max_subtraction"
    if bug == "blockwise_logsumexp":
        same_view = (pair[:, None] // n) == (pair[None, :] // n)
        per_anchor = 0.5 * sum(_cross_entropy(logits.masked_fill(block, float("-inf")), positive, stable)
                               for block in (same_view, ~same_view & ~keep))
    else:
        per_anchor = _cross_entropy(logits, positive, stable)
    if bug == "positive_pull":
        per_anchor = per_anchor + POSITIVE_PULL * (1 - sim[pair, positive])
    return per_anchor.sum() if bug == "sum_not_mean" else per_anchor.mean()


def mutant(bug: str | None, tau: float) -> LossSubject:
    """The loss with ``bug`` under the correct loss's declaration, rebuildable at another temperature."""
    def factory(temperature: float):
        return two_view(lambda z0, z1: nt_xent(z0, z1, tau=temperature, bug=bug), normalises=True,
                        reference="infonce", temperature=temperature, temperature_kwarg="temperature",
                        name=f"nt_xent[{bug or 'correct'}]")
    return LossSubject(f"nt_xent[{bug or 'correct'}](tau={tau:g})", factory, {"temperature": tau})


def run_all(subject: LossSubject, seed: int) -> dict[str, CheckResult]:
    return {prop: regression.check_loss(subject, prop, seed) for prop in regression.LOSS_PROPERTIES}


TEMPERATURES = st.sampled_from([0.05, 0.1, 0.2, 0.5])
"""Below 1: at tau = 1 "temperature applied twice" is no bug at all."""
SEEDS = st.integers(min_value=0, max_value=2 ** 31 - 1)


@pytest.mark.parametrize("bug", sorted(MUTATIONS))
def test_mutant_is_flagged_by_its_property(bug, seed, repro):
    prop = MUTATIONS[bug]
    result = regression.check_loss(mutant(bug, 0.5), prop, seed)
    assert result.status == "fail", f"mutation '{bug}' was not flagged by {prop}: {result.summary()}; {repro(bug=bug)}"
    assert result.summary().startswith(f"{prop} FAILED"), f"message does not name {prop}: {result.summary()}"
    assert result.measured is not None and result.tolerance, f"record lacks its figure: {result.record()}"


@given(seed=SEEDS, tau=TEMPERATURES)
def test_every_mutant_is_flagged_at_any_seed_and_temperature(seed, tau):
    results = {bug: regression.check_loss(mutant(bug, tau), prop, seed) for bug, prop in MUTATIONS.items()}
    missed = {bug: r.summary() for bug, r in results.items() if r.status != "fail"}
    assert not missed, f"mutants not flagged at seed={seed}, tau={tau}: {missed}"


@given(seed=SEEDS, tau=TEMPERATURES)
def test_unmutated_loss_raises_no_false_alarm(seed, tau):
    failed = [r.summary() for r in run_all(mutant(None, tau), seed).values() if r.status == "fail"]
    assert not failed, f"false alarms on the correct NT-Xent at seed={seed}, tau={tau}: {failed}"


def test_catch_rate_and_tripped_properties(seed, repro):
    """Full catalogue, all properties: every mutant trips at least its own property; the table is in the message."""
    tripped = {bug: sorted(p for p, r in run_all(mutant(bug, 0.5), seed).items() if r.status == "fail")
               for bug in MUTATIONS}
    missed = [bug for bug, props in tripped.items() if MUTATIONS[bug] not in props]
    assert not missed, (f"catch rate {len(MUTATIONS) - len(missed)}/{len(MUTATIONS)}; missed {missed}; "
                        f"tripped: {tripped}; {repro()}")
