"""Regression mode for non-contrastive losses (docs/REGRESSION.md, "Non-contrastive losses"; docs/THEORY.md §9).

Real peers as a user wires them: solo-learn's ``byol_loss_func`` and ``simsiam_loss_func``, written from their
public definitions (one direction, ``loss(p, z)``), and a symmetric SimSiam step ``1/2 D(p0, t1) + 1/2 D(p1, t0)``.
Each correct one passes every property at batch sizes 6, 19, 64 over 20 seeds; each buggy twin (target not
detached, the symmetric term missing, the wrong normalisation) fails with the fault named. With a model, the
implicit term's share is measured through BatchNorm's batch statistics, and is zero (with a warning) in eval mode.
"""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.noncontrastive import (check_loss, check_reference, check_stop_gradient,
                                                   implicit_term_share, non_contrastive, training_batchnorms,
                                                   _FixedStatsBatchNorm)
from dualnet_ssl.seeding import derive_seed, make_generator


def byol_loss_func(p, z, simplified=True):
    """solo-learn's BYOL loss: 2 - 2 cos(p, stopgrad z), averaged over the batch."""
    if simplified:
        return 2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1).mean()
    p, z = F.normalize(p, dim=-1), F.normalize(z, dim=-1)
    return 2 - 2 * (p * z.detach()).sum(dim=1).mean()


def simsiam_loss_func(p, z, simplified=True):
    """solo-learn's SimSiam loss: -cos(p, stopgrad z), averaged over the batch."""
    if simplified:
        return -F.cosine_similarity(p, z.detach(), dim=-1).mean()
    p, z = F.normalize(p, dim=-1), F.normalize(z, dim=-1)
    return -(p * z.detach()).sum(dim=1).mean()


def simsiam_step(p0, p1, z0, z1):
    """SimSiam's symmetric loss as its paper writes it: 1/2 D(p1, z2) + 1/2 D(p2, z1)."""
    return 0.5 * simsiam_loss_func(p0, z1) + 0.5 * simsiam_loss_func(p1, z0)


CORRECT = {
    "byol": non_contrastive(byol_loss_func, reference="normalised_mse"),
    "byol unsimplified": non_contrastive(lambda p, z: byol_loss_func(p, z, simplified=False),
                                         reference="normalised_mse", name="byol_loss_func(simplified=False)"),
    "simsiam": non_contrastive(simsiam_loss_func, reference="negative_cosine"),
    "simsiam symmetric": non_contrastive(simsiam_step, form="pairs", reference="negative_cosine", scale=0.5),
}

BUGGY = {
    "target not detached": (non_contrastive(lambda p, z: 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean(),
                                            reference="normalised_mse"), "stop_gradient", "target is not detached"),
    "symmetric term missing": (non_contrastive(lambda p0, p1, z0, z1: 0.5 * simsiam_loss_func(p0, z1), form="pairs",
                                               reference="negative_cosine", scale=0.5),
                               "stop_gradient", "a direction of the symmetric loss is missing"),
    "normalised over the batch": (non_contrastive(lambda p, z: -(F.normalize(p, dim=0) * F.normalize(z, dim=0)
                                                                 .detach()).sum(1).mean(),
                                                  reference="negative_cosine"),
                                  "reference_value_and_gradient", "vs negative_cosine"),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_byol_regression_correct_peers_pass_over_20_seeds(name, seed):
    failures = [r.summary() for s in range(20) for r in check_loss(CORRECT[name], seed=derive_seed(seed, str(s)))
                if not r.ok]
    assert not failures, "\n".join(failures[:3])


@pytest.mark.parametrize("name", sorted(BUGGY))
def test_byol_regression_buggy_twins_fail_with_the_fault_named(name, seed):
    decl, check, fault = BUGGY[name]
    failed = [r for r in check_loss(decl, seed=seed) if r.status == "fail" and r.check == check]
    assert len(failed) == 3, f"{name}: expected {check} to fail at batch sizes 6, 19, 64"
    assert all(fault in r.message for r in failed), failed[0].summary()


def test_byol_regression_wrong_factor_and_missing_symmetric_term_fail_the_reference(seed):
    doubled = non_contrastive(lambda p, z: 2 * simsiam_loss_func(p, z), reference="negative_cosine")
    assert check_reference(doubled, 6, seed).status == "fail"
    one_sided = BUGGY["symmetric term missing"][0]
    result = check_reference(one_sided, 6, seed)
    assert result.status == "fail" and "missing symmetric term" in result.message


def test_byol_regression_caller_detached_target_is_not_applicable(seed):
    decl = non_contrastive(lambda p, z: -F.cosine_similarity(p, z, dim=-1).mean(), detaches_target=False)
    assert check_stop_gradient(decl, 6, seed).status == "not_applicable"


def test_byol_regression_bad_input_is_named():
    with pytest.raises(BadInput, match="form='triples'"):
        non_contrastive(simsiam_loss_func, form="triples")
    with pytest.raises(BadInput, match="must be callable"):
        non_contrastive("simsiam")
    with pytest.raises(BadInput, match="scale must be > 0"):
        non_contrastive(simsiam_loss_func, scale=0)
    with pytest.raises(BadInput, match="scalar tensor"):
        check_loss(non_contrastive(lambda p, z: (p - z.detach()).pow(2).sum(1)))


class _Branch(nn.Module):
    """A user's online branch as BYOL code writes it: projector Linear-BN-ReLU-Linear, predictor the same."""

    def __init__(self, seed, dim=6, hidden=12, out=4):
        super().__init__()
        with torch.random.fork_rng(devices=[]):      # torch's default init draws globally: leave that state alone
            self.projector = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                           nn.Linear(hidden, out))
            self.predictor = nn.Sequential(nn.Linear(out, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                           nn.Linear(hidden, out))
        g = make_generator(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def _share(eval_mode, seed):
    model = _Branch(derive_seed(seed, "model")).double()
    g = make_generator(derive_seed(seed, "views"))
    x1, x2 = (torch.randn(8, 6, generator=g, dtype=torch.float64) for _ in range(2))
    if eval_mode:
        model.predictor(model.projector(x1))     # one training pass sets the running statistics
        model.eval()

    def loss():
        z1, z2 = model.projector(x1), model.projector(x2)
        return byol_loss_func(model.predictor(z1), z2) + byol_loss_func(model.predictor(z2), z1)
    return model, implicit_term_share(model, loss, subject="user BYOL branch", seed=seed)


def test_byol_regression_implicit_term_share_in_training_and_eval_mode(seed):
    model, result = _share(False, seed)
    assert result.ok and result.measured > 0.01 and "through projector.1, predictor.1" in result.message
    model, result = _share(True, seed)
    assert result.ok and result.measured == 0.0 and result.message.startswith("warning")
    assert training_batchnorms(model) == []


def test_byol_regression_fixed_statistics_batchnorm_keeps_the_forward_value(seed):
    """Sanity: detaching the statistics changes what autograd sees, never the forward value."""
    bn = nn.BatchNorm1d(5).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    x = torch.randn(7, 5, generator=make_generator(seed), dtype=torch.float64)
    torch.testing.assert_close(_FixedStatsBatchNorm(bn)(x), bn(x), rtol=1e-12, atol=1e-12)
