"""Rejection tests for the regression wing's own machinery (issue 18, item 7; catalogue: scripts/mutations.py).

Each test feeds one deliberately wrong quantity, or a loss with one fault, to a piece of ``regression/`` and asserts
that it is rejected, naming the fault: the float32 probe's rounding and allowance, the non-contrastive reference's
tolerance, the distributed check's factor W, ... Every test here was written for a catalogue entry that
``pytest theorems/`` let survive before.
"""
import re

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from dualnet_ssl import regression
from dualnet_ssl import results as regression_results
from dualnet_ssl.regression import declared, precision, report, shapes
from dualnet_ssl.regression.noncontrastive import check_reference, non_contrastive
from dualnet_ssl.regression.probe import make_probe
from dualnet_ssl.regression.signatures import unequal_classes_layout
from theorems.regression_mutants import mutant, nt_xent

# ---------------------------------------------------------------- precision.py: what float32 is held to


def _float64_inside(z0, z1):
    """NT-Xent computed in float64 whatever the inputs' dtype: no float32 arithmetic of its own."""
    return nt_xent(z0.double(), z1.double(), tau=0.1)


def test_float32_error_is_measured_against_float64_on_the_same_rounded_inputs(seed):
    """stability_float32 (docs/REGRESSION.md, "float32 accuracy"): the float32 run is compared with the float64 run
    on the *same float32-rounded* inputs. A loss that computes in float64 inside does no float32 arithmetic, so on
    every geometry its measured float32 error is exactly 0; measured against the unrounded inputs (or with the
    rounding skipped) the inputs' rounding would be counted as the loss's float32 error."""
    adapter = regression.two_view(_float64_inside, normalises=True, temperature=0.1)
    probe = make_probe(adapter, seed)
    geometries = {"probe points": probe, **precision._extremes(adapter, probe)}
    errors = {k: precision._read(adapter, p, 0.1, k).error for k, p in geometries.items()}
    assert all(e == 0.0 for e in errors.values()), f"input rounding counted as float32 error: {errors}"


def test_a_float32_reading_over_its_allowance_is_inaccurate():
    """A reading twice its allowed error, or non-finite, is not accurate; one exactly at it is."""
    assert precision._ok(precision.Reading(0.5, "probe points", 1e-6, 1e-6, "value", True))
    assert not precision._ok(precision.Reading(0.5, "probe points", 2e-6, 1e-6, "value", True)), \
        "a float32 error twice its allowance passed"
    assert not precision._ok(precision.Reading(0.5, "probe points", 0.0, 1e-6, "value", False))


# ---------------------------------------------------------------- noncontrastive.py: the reference's tolerance


def _simsiam_norm_eps(p, z):
    """SimSiam's -cos with an epsilon added to the norms (p / (||p|| + 1e-4)): off by about 1e-5 relative."""
    return -((p / (p.norm(dim=-1, keepdim=True) + 1e-4)) * F.normalize(z.detach(), dim=-1)).sum(-1).mean()


def test_noncontrastive_reference_rejects_a_small_epsilon_in_the_norm(seed):
    """reference_value_and_gradient is a float64 identity (docs/REGRESSION.md, "Non-contrastive losses"): an
    epsilon of 1e-4 added to the prediction's norm moves the value and gradient by ~1e-5 relative, far outside
    the float64 gradient tolerance."""
    result = check_reference(non_contrastive(_simsiam_norm_eps, reference="negative_cosine"), 6, seed)
    assert result.status == "fail" and "vs negative_cosine" in result.message, result.summary()


# ---------------------------------------------------------------- distributed.py: the convention's factor W


def make_global_times_world_loss(temperature: float = 0.5, world_size: int = 2, times_world: bool = True):
    """NT-Xent over the global batch, every rank computing W times the global loss, gathered without gradient
    except into its own rows (pytorch-metric-learning's DistributedLossWrapper(efficient=False) pattern); with
    ``times_world=False`` the factor W is missing while the declaration still says it is there."""
    def loss(z0, z1):
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        pair = torch.stack([z0, z1])                                                   # (2, n, D)
        every = [torch.zeros_like(pair) for _ in range(world)]
        if world > 1:
            dist.all_gather(every, pair.contiguous())
        every[rank] = pair                                                             # own rows keep their gradient
        both = torch.cat(every, dim=1)                                                 # (2, N, D)
        return (world if times_world else 1) * nt_xent(both[0], both[1], tau=temperature)
    return regression.two_view(loss, normalises=True, reference="infonce", temperature=temperature,
                               temperature_kwarg="temperature", world_size=world_size,
                               distributed_convention="global_times_world")


def test_global_times_world_convention_carries_its_factor_w(seed):
    """distributed_gradient with distributed_convention='global_times_world' (docs/REGRESSION.md, "Distributed
    training"): a loss that really is W x the global loss on every rank passes; the same loss without the factor W,
    declared the same way, fails, so the reference's factor W is really applied."""
    from dualnet_ssl.regression import distributed as regression_distributed
    try:
        spec = "theorems.test_regression_faults:make_global_times_world_loss"
        correct = regression_distributed.check_distributed(regression.load_loss(spec), 2, seed)
        assert correct.status == "pass", correct.summary()
        missing = regression_distributed.check_distributed(regression.load_loss(spec, '{"times_world": false}'), 2,
                                                           seed)
        assert missing.status == "fail", f"a missing factor W passed: {missing.summary()}"
    finally:
        regression_distributed.close_pools()


# ---------------------------------------------------------------- report.py: the property summary


def _record(prop: str, status: str, draw: int) -> dict:
    return regression_results.CheckResult(prop, status, "", seed=draw, subject="user").record()


def test_property_summary_counts_properties_and_a_failing_draw_fails_the_property():
    """The report's ``property_summary`` (docs/REGRESSION.md, "The report"): two draws of one property count once,
    and a property that failed on one draw and passed on another is failed, never passed."""
    records = [_record("balance_total", "pass", 0), _record("balance_total", "fail", 1),
               _record("weight_signs", "pass", 0), _record("weight_signs", "pass", 1)]
    summary = report.property_summary(records)
    assert summary["properties"] == 2, f"the summary counts records, not properties: {summary}"
    assert (summary["fail"], summary["pass"]) == (1, 1), f"a failing draw was hidden by a passing one: {summary}"
    assert report.summary(records) == {"pass": 3, "fail": 1, "not_applicable": 0}


# ---------------------------------------------------------------- loading.py: a bare callable's declaration


def test_a_bare_callables_temperature_comes_from_its_factory_keyword():
    """--ssl-loss-declares with ``temperature_kwarg`` and no ``temperature``: the declared tau is the factory's
    keyword argument (docs/REGRESSION.md, "Declaring a loss"), so the reference can be declared without repeating
    it; without that derivation the declaration would have no temperature at all."""
    subject = regression.LossSubject("bare", lambda temperature: (lambda z0, z1: nt_xent(z0, z1, tau=temperature)),
                                     {"temperature": 0.2}, {"normalises": True, "reference": "infonce",
                                                            "temperature_kwarg": "temperature"})
    assert subject.build().temperature == 0.2
    assert subject.at_temperature(0.05).temperature == 0.05


# ---------------------------------------------------------------- shapes.py: positive counts


def test_positive_counts_leave_the_anchor_out():
    """Three views of classes of two samples: each anchor has 3 x 2 - 1 = 5 positives (itself excluded), as
    ``positives_per_anchor`` says; the ragged layout has 2 to 8 (classes of 1, 2 and 3 samples)."""
    adapter = regression.LossAdapter(lambda z, labels: z.sum(), form="views_labels", n_views=3, per_class=2,
                                     unit_inputs=True)
    assert shapes.positive_counts(adapter.layout(6)) == (5, 5) == (adapter.positives_per_anchor,) * 2
    ragged = unequal_classes_layout("views_labels", 6, 3, True, "all")
    assert shapes.positive_counts(ragged) == (2, 8), shapes.counts_text(ragged)


# ---------------------------------------------------------------- precision.py: the smallest safe temperature


def test_smallest_safe_tau_stops_at_the_first_inaccurate_temperature():
    """The finding's smallest safe tau walks the grid down from the declared tau and stops at the first inaccurate
    one: an accurate reading further down does not make the temperatures in between safe."""
    def at(tau, error):
        return tau, [precision.Reading(tau, "probe points", error, 1e-6, "value", True)]
    below = [at(0.2, 0.0), at(0.1, 1e-3), at(0.05, 0.0)]
    assert precision._smallest_accurate(0.5, below) == 0.2, "walked past an inaccurate temperature"


# ---------------------------------------------------------------- loss_properties.py: the balance breakdown


def test_balance_breakdown_has_positives_pulling_and_negatives_pushing(seed):
    """balance_total's message splits the total into its declared roles: on correct NT-Xent the positives' weights
    sum to > 0 and the declared negatives' to < 0 (Theorem 2's signs), and the parts add up to the total."""
    result = regression.check_loss(mutant(None, 0.5), "balance_total", seed)
    found = re.search(r"= (\S+) = positives (\S+) \+ declared negatives (\S+) \+ undeclared pairs (\S+) ",
                      result.message)
    assert result.status == "pass" and found, result.summary()
    total, pos, neg, other = (float(x) for x in found.groups())
    assert pos > 0 > neg, f"breakdown with the roles swapped: {result.message}"
    assert abs(pos + neg + other - total) <= 1e-3 * abs(pos), result.message


# ---------------------------------------------------------------- declared.py: tight points on the unit sphere


def test_unit_row_hinge_pairs_are_activated_by_tight_points(seed):
    """declared_pairs on a margin loss of unit rows (r = 1 - cos): at the probe some triplets meet their margin, at
    tight points (a common direction plus 1e-3 of the probe's structure) every one is active, so no declared pair is
    unused; tight points that kept the probe's cosines would leave those pairs inactive and fail the loss."""
    def cosine_hinge(q, p, n):
        q, p, n = F.normalize(q, dim=-1), F.normalize(p, dim=-1), F.normalize(n, dim=-1)
        return F.relu((n @ q.T).T - (q * p).sum(1)[:, None] + 1e-3).mean()
    subject = regression.LossSubject("cosine hinge", lambda: regression.per_anchor(cosine_hinge, n_negatives=6,
                                                                                   normalises=True))
    probe = make_probe(subject.build(), seed)
    weights, noise = declared.weights_at(subject.build(), probe)
    assert bool(((probe.layout.roles() != 0) & (weights.abs() <= noise)).any()), "no pair is inactive at the probe"
    result = regression.check_loss(subject, "declared_pairs", seed)
    assert result.status == "pass", f"pairs inactive at the probe were not activated by tight points: {result.summary()}"


# ---------------------------------------------------------------- peers.py: a ready declaration


def test_one_directional_pml_ntxent_is_declared_without_same_view_negatives(seed):
    """pytorch-metric-learning's SelfSupervisedLoss(symmetric=False) puts z0's anchors against z1 only: its ready
    declaration says so, and the weights agree (declared_pairs passes)."""
    pytest.importorskip("pytorch_metric_learning", reason="a peer: pip install -e '.[peers]'")
    subject = regression.LossSubject("pml one-way", regression.pml_ntxent, {"temperature": 0.5, "symmetric": False})
    assert subject.build().same_view_negatives is False
    result = regression.check_loss(subject, "declared_pairs", seed)
    assert result.status == "pass", result.summary()
