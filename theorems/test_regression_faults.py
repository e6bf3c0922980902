"""Rejection tests for the regression wing's own machinery (issue 18, item 7; catalogue: scripts/mutations.py).

Each test feeds one deliberately wrong quantity, or a loss with one fault, to a piece of ``regression/`` and asserts
that it is rejected, naming the fault: the float32 probe's rounding and allowance, the non-contrastive reference's
tolerance, the distributed check's factor W, ... Each was written for entries of the mutation catalogue
(scripts/mutations.py, its REGRESSION list) that the other regression test files let survive, or would have.
"""
import re

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from dualnet_ssl import regression
from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression import declared, precision, report, shapes
from dualnet_ssl.regression.noncontrastive import check_reference, non_contrastive
from dualnet_ssl.regression.engine import rebuilder
from dualnet_ssl.regression.geometry import make_probe
from dualnet_ssl.regression.signatures import unequal_classes_layout
from dualnet_ssl.results import CheckResult
from theorems.regression_mutants import mutant, nt_xent, one_directional
from theorems.test_regression_conventions import TAU, per_width, supcon, views_to_rows

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
    """SimSiam's -cos with the common epsilon added to the norm (p / (||p|| + 1e-8)): off by ~1e-9 relative."""
    return -((p / (p.norm(dim=-1, keepdim=True) + 1e-8)) * F.normalize(z.detach(), dim=-1)).sum(-1).mean()


def test_noncontrastive_reference_rejects_a_small_epsilon_in_the_norm(seed):
    """reference_value_and_gradient is a float64 identity (docs/REGRESSION.md, "Non-contrastive losses"): an
    epsilon of 1e-8 added to the prediction's norm moves the value and gradient by ~1e-9 relative, outside the
    float64 gradient tolerance (1e-10) though far inside any float32 one."""
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
    return CheckResult(prop, status, "", seed=draw, subject="user").record()


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
    assert rebuilder(subject.build)(0.05).temperature == 0.05


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


# ---------------------------------------------------------------- declared.py: the layout the weights say


def test_the_weights_name_which_view_holds_the_anchors(seed):
    """declared_pairs reads the direction off the weights (the view whose points own their rows holds the anchors):
    z0's anchors declared symmetric are named 'anchors z0 only'; the same loss with the views swapped, declared
    one-directional, is named as swapped."""
    as_symmetric = regression.LossSubject("one-way as symmetric", lambda: regression.two_view(
        one_directional, normalises=True, same_view_negatives=False))
    result = regression.check_loss(as_symmetric, "declared_pairs", seed)
    assert result.status == "fail" and "one-directional (anchors z0 only)" in result.message, result.summary()
    swapped = regression.LossSubject("views swapped", lambda: regression.two_view(
        lambda z0, z1: one_directional(z1, z0), normalises=True, symmetric=False, same_view_negatives=False))
    result = regression.check_loss(swapped, "declared_pairs", seed)
    assert result.status == "fail" and "the views the other way round" in result.message, result.summary()


def _capped_with_query_hinge(q, p, n):
    """A per-anchor InfoNCE that uses only the first 3 of its 6 negatives (a cap), plus a hinge that pushes the
    queries apart only when they come within 0.1 of each other (undeclared pairs switching on and off)."""
    logits = torch.cat([-((q - p) ** 2).sum(1, keepdim=True), -((q[:, None] - n[None, :3]) ** 2).sum(2)], 1)
    spread = F.relu(0.1 - 0.5 * torch.cdist(q, q) ** 2).triu(1).sum()
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)) + spread


def test_unused_declared_pairs_are_not_excused_by_undeclared_switching(seed):
    """declared_pairs excuses unused declared pairs only when *declared* pairs switch on and off (a hinge): a cap on
    the negatives stays a failure when some undeclared pair, not a declared one, is what switches."""
    subject = regression.LossSubject("capped", lambda: regression.per_anchor(_capped_with_query_hinge, n_negatives=6))
    result = regression.check_loss(subject, "declared_pairs", seed)
    assert result.status == "fail" and "declared but unused" in result.message, result.summary()


# ---------------------------------------------------------------- conventions.py: several positives per anchor


def _out_form_adapter(fn, **declares):
    return regression.LossAdapter(fn, form="indexes", n_views=3, unit_inputs=True, **declares)


def _first_anchor_repels_its_positives(z, idx, tau=TAU):
    """SupCon 'out' form per anchor (reduction='none'), except anchor 0, whose positives sit outside its softmax
    with the sign flipped: they are pushed apart while its negatives are still pushed (a sign error on one anchor)."""
    eye = torch.eye(len(z), dtype=torch.bool)
    same = (idx[:, None] == idx[None, :]) & ~eye
    logits = z @ z.T / tau
    out = ((torch.logsumexp(logits.masked_fill(eye, -1e9), 1, keepdim=True) - logits) * same).sum(1) / same.sum(1)
    flipped = torch.logsumexp(logits.masked_fill(same | eye, -1e9), 1) + (logits * same).sum(1) / same.sum(1)
    return torch.where(torch.arange(len(z)) == 0, flipped, out)


def test_one_anchor_with_a_negative_positive_total_fails_the_out_form(seed):
    """"Out" form (docs/THEORY.md §5a): a positive may be repelled, but *each* anchor's positive total must be >= 0.
    One anchor whose positives are pushed apart fails, though the batch's total and the largest anchor's are > 0."""
    adapter = _out_form_adapter(_first_anchor_repels_its_positives, reduction="none")
    verdict = regression.conventions.positive_total_signs(adapter, regression.make_probe(adapter, seed))
    assert not verdict.ok and "each anchor's positive total < 0" in verdict.message, verdict.message
    assert "pushed apart overall" in verdict.message, verdict.message


def _merged_classes(z, idx, tau=TAU):
    """SupCon 'out' form with a mask that merges classes two by two (idx // 2): negatives of the merged class are
    attracted as positives."""
    return supcon(z, idx // 2, tau)


def test_an_attracted_negative_fails_the_out_form(seed):
    adapter = _out_form_adapter(_merged_classes)
    verdict = regression.conventions.positive_total_signs(adapter, regression.make_probe(adapter, seed))
    assert not verdict.ok and "declared negative pairs are attracted" in verdict.message, verdict.message


def _in_form_third_view_left_out(z, idx, tau=TAU):
    """SupCon 'in' form with view 0's rows as the only anchors, whose positive mask leaves the third view out: those
    positives stay in the softmax's denominator and are pushed away."""
    n = len(z) // 3
    view = torch.arange(len(z)) // n
    eye = torch.eye(len(z), dtype=torch.bool)[:n]
    positive = (idx[:n, None] == idx[None, :]) & ~eye & (view[None, :] < 2)
    logits = z[:n] @ z.T / tau
    log_prob = logits - torch.logsumexp(logits.masked_fill(eye, -1e9), dim=1, keepdim=True)
    return -torch.logsumexp(log_prob.masked_fill(~positive, -1e9), dim=1).mean()


def test_the_in_form_holds_every_positive_to_its_sign(seed):
    """The 'in' form (reference='supcon_in') never repels a positive, so weight_signs holds every positive pair to
    dL/dr > 0 there, not to the 'out' form's lenient totals: a third view left out of the positives fails it."""
    subject = regression.LossSubject("in-form third view", lambda: _out_form_adapter(
        _in_form_third_view_left_out, symmetric=False, reference="supcon_in", temperature=TAU))
    result = regression.check_loss(subject, "weight_signs", seed)
    assert result.status == "fail" and "declared pairs have the wrong sign" in result.message, result.summary()


# ---------------------------------------------------------------- shapes.py and signatures.py: the probe's shapes


def _three_views_fixed_count(z, tau=TAU):
    """SupCon 'out' form over (N, V, D) views with the positive count hard-coded for three views (/ 2)."""
    flat = views_to_rows(z)
    idx = torch.arange(z.shape[0]).repeat(z.shape[1])
    eye = torch.eye(len(flat), dtype=torch.bool)
    logits = flat @ flat.T / tau
    log_prob = logits - torch.logsumexp(logits.masked_fill(eye, -1e9), dim=1, keepdim=True)
    return -((log_prob * ((idx[:, None] == idx[None, :]) & ~eye)).sum(1) / 2).mean()


def test_a_positive_count_hard_coded_for_the_declared_views_fails_at_one_view_more(seed):
    """reference_value tries one view more than declared (module shapes): a count fixed for three views matches the
    reference at the probe and not at four views."""
    subject = regression.LossSubject("fixed count", lambda: regression.LossAdapter(
        _three_views_fixed_count, form="views", n_views=3, unit_inputs=True, reference="supcon_out", temperature=TAU))
    result = regression.check_loss(subject, "reference_value", seed)
    assert result.status == "fail" and "4 views" in result.message, result.summary()


def _labels_as_positions(z, idx, tau=TAU):
    """NT-Xent over two stacked views whose positive mask compares each anchor's label with the *position* of the
    other row (row j is sample j % N): right only when the labels happen to be 0..N-1 in order."""
    n = len(z) // 2
    eye = torch.eye(len(z), dtype=torch.bool)
    positive = (idx[:, None] == (torch.arange(len(z)) % n)[None, :]) & ~eye
    logits = z @ z.T / tau
    log_prob = logits - torch.logsumexp(logits.masked_fill(eye, -1e9), dim=1, keepdim=True)
    return -((log_prob * positive).sum(1) / positive.sum(1).clamp_min(1)).mean()


def test_labels_out_of_order_expose_a_loss_that_reads_positions(seed):
    """The probe's labels are neither sorted nor 0..N-1 in order (signatures.label_layout), so a loss that compares
    labels with row positions fails reference_value."""
    subject = regression.LossSubject("labels as positions", lambda: regression.LossAdapter(
        _labels_as_positions, form="indexes", unit_inputs=True, reference="infonce", temperature=TAU))
    result = regression.check_loss(subject, "reference_value", seed)
    assert result.status == "fail", result.summary()


# ---------------------------------------------------------------- batches.py: the first call in both dtypes


class _Float64Projection(torch.nn.Module):
    """A loss with a float64 buffer: runs on float64 inputs, raises on float32 ones."""

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.eye(12, dtype=torch.float64))

    def forward(self, z0, z1):
        return nt_xent(z0 @ self.projection, z1 @ self.projection, tau=TAU)


def test_a_loss_that_fails_in_float32_is_one_usage_error_at_the_first_call():
    """first_call runs the loss in float64 and float32 (docs/REGRESSION.md, "Dtypes"): one that raises in float32
    is a usage error there, naming float32, not a failure in every property later."""
    adapter = regression.two_view(_Float64Projection(), normalises=True, dim=12)
    with pytest.raises(BadInput, match="float32"):
        regression.first_call(adapter)


# ---------------------------------------------------------------- loss_properties.py / declared.py: small faults


def _one_anchor_pulled(q, p, n):
    """Per-anchor InfoNCE on squared distances plus an extra pull on query 0's positive only."""
    logits = torch.cat([-((q - p) ** 2).sum(1, keepdim=True), -((q[:, None] - n[None]) ** 2).sum(2)], 1)
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)) + 0.1 * ((q[0] - p[0]) ** 2).sum()


def test_per_anchor_balance_fails_when_one_anchor_is_unbalanced(seed):
    """balance_per_anchor (Theorem 2 per anchor): every anchor must balance; one extra pull on one anchor fails."""
    subject = regression.LossSubject("one pulled", lambda: regression.per_anchor(_one_anchor_pulled))
    result = regression.check_loss(subject, "balance_per_anchor", seed)
    assert result.status == "fail" and "worst anchor 0" in result.message, result.summary()


def _with_weak_same_view_term(z0, z1):
    """One-directional InfoNCE plus 1e-6 x a same-view cosine term: weight on pairs the declaration leaves out."""
    q = F.normalize(z0, dim=1)
    return one_directional(z0, z1) + 1e-6 * (q @ q.T).sum()


def test_a_weak_weight_on_an_undeclared_pair_is_not_noise(seed):
    """undeclared_pairs' noise floor is the float64 gradient tolerance relative to the peak weight: a term at 1e-6
    of the loss's weights is far above it and fails."""
    subject = regression.LossSubject("weak same-view", lambda: regression.two_view(
        _with_weak_same_view_term, normalises=True, symmetric=False, same_view_negatives=False))
    result = regression.check_loss(subject, "undeclared_pairs", seed)
    assert result.status == "fail" and "pairs its declaration does not list" in result.message, result.summary()


def _with_l1_penalty(z0, z1):
    """NT-Xent plus an L1 penalty of 1e-8 on the raw embeddings (not a function of pairwise similarities)."""
    return nt_xent(z0, z1, tau=0.5) + 1e-8 * (z0.abs().sum() + z1.abs().sum())


def test_a_small_raw_coordinate_term_leaves_a_gradient_no_pair_weight_explains(seed):
    """gradient_routing fits each point's gradient with its pair directions (docs/THEORY.md §5a): an L1 penalty of
    1e-8 leaves a residual of about 1e-7 to 3e-6 of the gradient (the share grows with the batch), far above the
    float64 gradient tolerance (rtol 1e-10) and far below a tolerance loosened to float32's 1e-4, at every size."""
    subject = regression.LossSubject("l1", lambda: regression.two_view(_with_l1_penalty, normalises=True))
    result = regression.check_loss(subject, "gradient_routing", seed)
    assert result.status == "fail" and "not that of a function of pairwise distances" in result.message, \
        result.summary()


# ---------------------------------------------------------------- probe.py: pair directions of unit-row inputs


def _moco_on_unit_rows(q, k, queue, tau=TAU):
    """MoCo's loss on rows its caller has normalised (no normalisation inside), keys and queue detached."""
    logits = torch.cat([(q * k.detach()).sum(1, keepdim=True), q @ queue.detach().T], 1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def test_routed_weights_of_unit_row_inputs_have_the_reference_signs(seed):
    """With unit_inputs, a live point's pair directions are dr_ij/dz_i = -z_j (r = 1 - z_i.z_j, docs/THEORY.md §5a);
    the weights read from the queries' gradients (gradient_to='anchors') then equal the InfoNCE reference's."""
    subject = regression.LossSubject("moco unit rows", lambda: regression.LossAdapter(
        _moco_on_unit_rows, form="queue", gradient_to="anchors", unit_inputs=True, reference="infonce",
        temperature=TAU))
    for prop in ("weight_signs", "reference_weights"):
        result = regression.check_loss(subject, prop, seed)
        assert result.status == "pass", result.summary()


# ---------------------------------------------------------------- reference_properties.py: the constant-factor hint


def test_an_undeclared_width_dependent_factor_is_not_offered_as_a_scale(seed):
    """reference_value on a loss that is 1/D x NT-Xent, no scale declared: the value is a constant multiple of the
    reference at the probe, but the hint must name the width dependency, not suggest declaring scale=... (issue 18:
    the declared scale would then pass at the probe's shapes and be wrong at real ones)."""
    subject = regression.LossSubject("per-width undeclared", lambda: regression.LossAdapter(
        per_width, unit_inputs=True, reference="infonce", temperature=TAU, batch_size=8))
    result = regression.check_loss(subject, "reference_value", seed)
    assert result.status == "fail" and "the factor scales with the embedding width" in result.message, \
        result.summary()
    assert "declare scale=" not in result.message, result.summary()
