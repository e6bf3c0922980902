"""Unit tests of reference/training.py, and "this checker can fail" tests of ``check_residue_shrinks``
(the checker of theorems/test_residue_training.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dualnet_ssl.compare import assert_identity
from dualnet_ssl.distributions import DiscreteAugmentedData, enumerate_loss
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.losses import PairLoss, pair_distance, simple, triplet, triplet_loss
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.operators import residue
from dualnet_ssl.tolerances import tolerance
from dualnet_ssl.training import (PROTOTYPE_LR, PROTOTYPE_STEPS, check_residue_shrinks, expected_loss,
                                expected_pair_distances, gradient_step, prototype_case, train)

F64 = torch.float64
PASSING_SEED = 0
"""Seed of the reference run the rejection tests perturb (one of the seeds the thresholds were measured on; the
theorem tests assert on held-out seeds)."""


def tiny_case(seed: int, n: int = 3, m: int = 2, n_out: int = 2):
    """Random outputs and non-uniform probabilities, so that a wrong weighting cannot cancel by symmetry."""
    g = make_generator(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=F64) + 0.1
    aug, samples = rand(n, m), rand(n)
    data = DiscreteAugmentedData(torch.randn(n, m, 1, generator=g, dtype=F64),
                                 aug / aug.sum(1, keepdim=True), samples / samples.sum())
    return data, torch.randn(n, m, n_out, generator=g, dtype=F64)


def brute_force_pair_distances(data, outputs, exclude_self):
    n, m = data.aug_probs.shape
    p, q = data.sample_probs.tolist(), data.aug_probs.tolist()
    r = lambda i, a, j, b: float(pair_distance(outputs[i, a], outputs[j, b]))
    r_pos = r_neg = 0.0
    for i in range(n):
        others = sum(p[j] for j in range(n) if j != i) if exclude_self else 1.0
        for a in range(m):
            for b in range(m):
                r_pos += p[i] * q[i][a] * q[i][b] * r(i, a, i, b)
            for j in range(n):
                if exclude_self and j == i:
                    continue
                for b in range(m):
                    r_neg += p[i] * q[i][a] * p[j] / others * q[j][b] * r(i, a, j, b)
    return torch.tensor(r_pos, dtype=F64), torch.tensor(r_neg, dtype=F64)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_expected_pair_distances_match_brute_force(exclude_self, seed, repro):
    data, outputs = tiny_case(seed)
    got, want = expected_pair_distances(data, outputs, exclude_self), brute_force_pair_distances(
        data, outputs, exclude_self)
    for name, a, b in zip(("E[r_+]", "E[r_-]"), got, want):
        assert_identity(a, b, what=name, context=repro(seed=seed, exclude_self=exclude_self))


def test_expected_pair_distances_match_enumerated_loss(seed, repro):
    """E[r_+] and E[r_-] are the enumerated expected losses L = r_+ and L = r_-."""
    data, outputs = tiny_case(seed)
    r_pos, r_neg = expected_pair_distances(data, outputs)
    assert_identity(r_pos, enumerate_loss(data, outputs, lambda rp, rn: rp).expected, what="E[r_+]",
                    context=repro(seed=seed))
    assert_identity(r_neg, enumerate_loss(data, outputs, lambda rp, rn: rn[..., 0]).expected, what="E[r_-]",
                    context=repro(seed=seed))


def test_expected_pair_distances_refuse_wrong_shape(seed):
    data, outputs = tiny_case(seed)
    with pytest.raises(BadInput, match="outputs must have shape"):
        expected_pair_distances(data, outputs[:, :1])


def test_gradient_step_is_one_descent_step(seed, repro):
    net, data = prototype_case(seed)
    loss, lr = triplet(0.5), 1e-3
    value = expected_loss(net, data, loss)
    grads = torch.autograd.grad(value, list(net.parameters()))
    want = [(p - lr * g).detach() for p, g in zip(net.parameters(), grads)]
    returned = gradient_step(net, data, loss, lr)
    context = repro(seed=seed, loss=loss, lr=lr)
    assert_identity(torch.tensor(returned, dtype=F64), value.detach(), what="E[L] returned", context=context)
    for p, w in zip(net.parameters(), want):
        assert_identity(p.detach(), w, what="weights after one step", context=context)
    after = float(expected_loss(net, data, loss).detach())
    assert after < returned, f"a small descent step raised E[L] from {returned} to {after} [{context}]"


def test_train_records_residue_and_spread_at_each_recorded_step(seed, repro):
    loss = triplet(2.0)
    net, data = prototype_case(seed)
    traj = train(net, data, loss, lr=PROTOTYPE_LR, steps=4, record_every=2)
    assert traj.steps == [0, 2, 4]
    fresh, _ = prototype_case(seed)
    context = repro(seed=seed, loss=loss)
    for name in traj.layers:
        split = residue(fresh, name, data, loss)
        got = torch.tensor([traj.column(q, name)[0] for q in ("theta_norm", "main_norm", "grad_norm")], dtype=F64)
        want = torch.stack([split.theta.norm(), split.main.norm(), split.neg_gradient.norm()])
        assert_identity(got, want, what=f"recorded norms at step 0, layer {name}", context=context)
        assert traj.ratio(name)[0] == pytest.approx(split.ratio(), rel=tolerance(F64, "exact").rtol)
    with torch.no_grad():
        r_pos, r_neg = expected_pair_distances(data, fresh(data.flat_views()).reshape(*data.aug_probs.shape, -1))
    assert_identity(torch.tensor([traj.r_pos[0], traj.r_neg[0]], dtype=F64), torch.stack([r_pos, r_neg]),
                    what="recorded E[r_+], E[r_-] at step 0", context=context)


def test_train_with_simple_loss_records_no_residue(seed, repro):
    """Theorem 3 inside the training loop: for L_simp, theta = 0 at every recorded step."""
    net, data = prototype_case(seed)
    traj = train(net, data, simple(), lr=1e-3, steps=2, record_every=1)
    theta, main = np.asarray(traj.theta_norm), np.asarray(traj.main_norm)
    tol = tolerance(F64, "exact")
    assert np.all(theta <= tol.atol + tol.rtol * main), f"L_simp residue {theta} vs main {main} [{repro(seed=seed)}]"


def test_train_honours_exclude_self(seed, repro):
    """With self-negatives excluded, the step and the records follow the exclude-self distribution (enumeration and
    brute force), which differs from the one with self-negatives."""
    loss, lr = triplet(0.5), PROTOTYPE_LR
    net, data = prototype_case(seed)
    fresh, _ = prototype_case(seed)
    traj = train(net, data, loss, lr=lr, steps=1, record_every=1, exclude_self=True)
    context = repro(seed=seed, loss=loss, exclude_self=True)
    outputs = fresh(data.flat_views()).reshape(*data.aug_probs.shape, -1)
    values = {flag: enumerate_loss(data, outputs, loss, exclude_self=flag).expected for flag in (True, False)}
    assert abs(float((values[True] - values[False]).detach())) > 1e-3, f"exclusion should change E[L] [{context}]"
    assert_identity(torch.tensor(traj.expected_loss[0], dtype=F64), values[True].detach(), what="E[L] recorded",
                    context=context)
    r_neg = brute_force_pair_distances(data, outputs.detach(), exclude_self=True)[1]
    assert_identity(torch.tensor(traj.r_neg[0], dtype=F64), r_neg, what="E[r_-] recorded", context=context)
    grads = torch.autograd.grad(values[True], list(fresh.parameters()))
    for p, q, g in zip(net.parameters(), fresh.parameters(), grads):
        assert_identity(p.detach(), (q - lr * g).detach(), what="weights after one exclude-self step", context=context)


def test_train_refuses_a_schedule_that_misses_the_last_step():
    net, data = prototype_case(0)
    with pytest.raises(BadInput, match="multiple of record_every"):
        train(net, data, triplet(), lr=PROTOTYPE_LR, steps=10, record_every=3)


@pytest.fixture(scope="module")
def passing_run():
    """The §7 run at PASSING_SEED (L_tri, tau 0.5), recorded at steps 0 and 300; it must pass the check."""
    net, data = prototype_case(PASSING_SEED)
    return train(net, data, triplet(0.5), lr=PROTOTYPE_LR, steps=PROTOTYPE_STEPS, record_every=PROTOTYPE_STEPS)


def test_check_accepts_the_measured_run(passing_run):
    measured = check_residue_shrinks(passing_run, f"seed={PASSING_SEED}")
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


def test_unbalanced_loss_run_is_refused():
    """An extra push on negatives (L_tri - 1e-3 r_-, Theorem 2's balance broken) is unbounded below: the run
    diverges within 300 steps and the enumeration refuses the non-finite loss instead of passing it on."""
    push = PairLoss("triplet-push", lambda rp, rn: triplet_loss(rp, rn, tau=0.5, margin=0.0) - 1e-3 * rn[..., 0])
    net, data = prototype_case(PASSING_SEED)
    with pytest.raises(BadInput, match="non-finite"):
        train(net, data, push, lr=PROTOTYPE_LR, steps=PROTOTYPE_STEPS, record_every=PROTOTYPE_STEPS)
