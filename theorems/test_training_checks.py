"""The training module's exact expectations and its checker (reference/training.py): E[r_+], E[r_-] against a
brute-force sum, and "this checker can fail" tests of ``check_residue_shrinks`` (the checker of
theorems/test_residue_training.py)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from dualnet_ssl.compare import assert_identity
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.losses import triplet
from dualnet_ssl.training import (PROTOTYPE_LR, PROTOTYPE_STEPS, check_residue_shrinks, expected_pair_distances,
                                  prototype_case, train)

from theorems.training_cases import F64, PASSING_SEED, brute_force_pair_distances, tiny_case
from dualnet_ssl.distributions import enumerate_loss, view_outputs



@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_expected_pair_distances_match_brute_force(exclude_self, m, seed, repro):
    data, outputs = tiny_case(seed, m=m)
    got, want = expected_pair_distances(data, outputs, exclude_self), brute_force_pair_distances(
        data, outputs, exclude_self)
    for name, a, b in zip(("E[r_+]", "E[r_-]"), got, want):
        assert_identity(a, b, what=name, context=repro(seed=seed, m=m, exclude_self=exclude_self))


# ------------------------------------------------------------------ check_residue_shrinks must be able to fail

@pytest.fixture(scope="module")
def passing_run():
    """The §7 run at PASSING_SEED (L_tri, tau 0.5), recorded at steps 0 and 300; it must pass the check."""
    net, data = prototype_case(PASSING_SEED)
    return train(net, data, triplet(0.5), lr=PROTOTYPE_LR, steps=PROTOTYPE_STEPS, record_every=PROTOTYPE_STEPS)


def test_check_accepts_the_measured_run(passing_run):
    measured = check_residue_shrinks(passing_run, f"seed={PASSING_SEED}").details
    assert set(measured) == {"spread_drop"} | {f"{q} {name}" for name in passing_run.layers
                                               for q in ("theta_drop", "final_ratio")}


def test_check_rejects_a_run_with_learning_rate_zero(repro):
    net, data = prototype_case(PASSING_SEED)
    traj = train(net, data, triplet(0.5), lr=0.0, steps=PROTOTYPE_STEPS, record_every=PROTOTYPE_STEPS)
    context = repro(seed=PASSING_SEED, lr=0.0)
    with pytest.raises(IdentityViolation, match=r"spread E\[r_\+\]/E\[r_-\] fell only 1x .*required >= 2x") as err:
        check_residue_shrinks(traj, context)
    assert "lr=0" in str(err.value) and "reproduce: pytest" in str(err.value)


def _with_last(traj, quantity, layer_index, factor):
    values = [list(row) for row in getattr(traj, quantity)]
    values[-1][layer_index] *= factor
    return dataclasses.replace(traj, **{quantity: values})


def test_check_rejects_a_residue_that_does_not_shrink(passing_run):
    start, end = passing_run.theta_norm[0][1], passing_run.theta_norm[-1][1]
    stalled = _with_last(passing_run, "theta_norm", 1, 0.5 * start / end)   # fell only 2x in layer 1
    with pytest.raises(IdentityViolation, match=r"\|\|theta\|\| of layer weights.1 fell only 2x .*required >= 5x"):
        check_residue_shrinks(stalled, f"seed={PASSING_SEED}")


def test_check_measures_the_drop_from_first_to_last_record(passing_run, repro):
    """A residue that peaks mid-run (100x its start) and ends at start / 2 fell only 2x: the drop is first / last,
    not the largest / smallest recorded value (which would be 200x here)."""
    start = passing_run.theta_norm[0][1]
    first, last = passing_run.theta_norm
    peaked = dataclasses.replace(
        passing_run, steps=[0, 150, 300],
        expected_loss=[passing_run.expected_loss[0]] + passing_run.expected_loss,
        r_pos=[passing_run.r_pos[0]] + passing_run.r_pos, r_neg=[passing_run.r_neg[0]] + passing_run.r_neg,
        theta_norm=[first, [t * (100 if l == 1 else 1) for l, t in enumerate(first)],
                    [start / 2 if l == 1 else t for l, t in enumerate(last)]],
        main_norm=[passing_run.main_norm[0]] + passing_run.main_norm,
        grad_norm=[passing_run.grad_norm[0]] + passing_run.grad_norm)
    context = repro(seed=PASSING_SEED, layer="weights.1", theta="start, 100 start, start/2")
    with pytest.raises(IdentityViolation, match=r"weights.1 fell only 2x .*steps 0->300\); required >= 5x"):
        check_residue_shrinks(peaked, context)


def test_check_rejects_a_residue_that_vanishes_relative_to_the_main_term(passing_run):
    big_main = _with_last(passing_run, "main_norm", 2, 100.0)
    with pytest.raises(IdentityViolation, match=r"final \|\|theta\|\| / \|\|2 OP w\|\| of layer weights.2 is 0.0"):
        check_residue_shrinks(big_main, f"seed={PASSING_SEED}")


def test_check_rejects_non_finite_values(passing_run):
    broken = dataclasses.replace(passing_run, r_neg=[passing_run.r_neg[0], float("nan")])
    with pytest.raises(IdentityViolation, match=r"E\[r_-\] is not finite from step 300 \[seed=0\]"):
        check_residue_shrinks(broken, "seed=0")


def test_check_rejects_a_single_record(passing_run):
    short = dataclasses.replace(passing_run, steps=passing_run.steps[:1])
    with pytest.raises(IdentityViolation, match="at least 2 recorded steps"):
        check_residue_shrinks(short)


def test_train_honours_exclude_self(seed, repro):
    """With self-negatives excluded, the step and the records follow the exclude-self distribution (enumeration and
    brute force), which differs from the one with self-negatives."""
    loss, lr = triplet(0.5), PROTOTYPE_LR
    net, data = prototype_case(seed)
    fresh, _ = prototype_case(seed)
    traj = train(net, data, loss, lr=lr, steps=1, record_every=1, exclude_self=True)
    context = repro(seed=seed, loss=loss, exclude_self=True)
    outputs = view_outputs(fresh, data)
    values = {flag: enumerate_loss(data, outputs, loss, exclude_self=flag).expected for flag in (True, False)}
    assert abs(float((values[True] - values[False]).detach())) > 1e-3, f"exclusion should change E[L] [{context}]"
    assert_identity(torch.tensor(traj.expected_loss[0], dtype=F64), values[True].detach(), what="E[L] recorded",
                    context=context)
    r_neg = brute_force_pair_distances(data, outputs.detach(), exclude_self=True)[1]
    assert_identity(torch.tensor(traj.r_neg[0], dtype=F64), r_neg, what="E[r_-] recorded", context=context)
    grads = torch.autograd.grad(values[True], list(fresh.parameters()))
    for p, q, g in zip(net.parameters(), fresh.parameters(), grads):
        assert_identity(p.detach(), (q - lr * g).detach(), what="weights after one exclude-self step", context=context)
