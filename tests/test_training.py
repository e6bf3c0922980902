"""Unit tests of reference/training.py. The brute-force check of E[r_+], E[r_-] and the "this checker can fail"
tests of ``check_residue_shrinks`` are in theorems/test_training_checks.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dualnet_ssl.compare import assert_identity
from dualnet_ssl.distributions import enumerate_loss, view_outputs
from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import PairLoss, simple, triplet, triplet_loss
from dualnet_ssl.operators import residue
from dualnet_ssl.tolerances import tolerance
from dualnet_ssl.training import (PROTOTYPE_LR, PROTOTYPE_STEPS, expected_loss, expected_pair_distances, gradient_step,
                                  prototype_case, train)
from theorems.training_cases import PASSING_SEED, tiny_case

F64 = torch.float64


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
        r_pos, r_neg = expected_pair_distances(data, view_outputs(fresh, data))
    assert_identity(torch.tensor([traj.r_pos[0], traj.r_neg[0]], dtype=F64), torch.stack([r_pos, r_neg]),
                    what="recorded E[r_+], E[r_-] at step 0", context=context)


def test_train_with_simple_loss_records_no_residue(seed, repro):
    """Theorem 3 inside the training loop: for L_simp, theta = 0 at every recorded step."""
    net, data = prototype_case(seed)
    traj = train(net, data, simple(), lr=1e-3, steps=2, record_every=1)
    theta, main = np.asarray(traj.theta_norm), np.asarray(traj.main_norm)
    tol = tolerance(F64, "exact")
    assert np.all(theta <= tol.atol + tol.rtol * main), f"L_simp residue {theta} vs main {main} [{repro(seed=seed)}]"




def test_train_refuses_a_schedule_that_misses_the_last_step():
    net, data = prototype_case(0)
    with pytest.raises(BadInput, match="multiple of record_every"):
        train(net, data, triplet(), lr=PROTOTYPE_LR, steps=10, record_every=3)


def test_unbalanced_loss_run_is_refused():
    """An extra push on negatives (L_tri - 1e-3 r_-, Theorem 2's balance broken) is unbounded below: the run
    diverges within 300 steps and the enumeration refuses the non-finite loss instead of passing it on."""
    push = PairLoss("triplet-push", lambda rp, rn: triplet_loss(rp, rn, tau=0.5, margin=0.0) - 1e-3 * rn[..., 0])
    net, data = prototype_case(PASSING_SEED)
    with pytest.raises(BadInput, match="non-finite"):
        train(net, data, push, lr=PROTOTYPE_LR, steps=PROTOTYPE_STEPS, record_every=PROTOTYPE_STEPS)
