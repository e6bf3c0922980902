"""The conventions of real SSL code, declared (docs/REGRESSION.md, "Conventions"; docs/THEORY.md §5a).

Every convention has a correct loss, written here from its definition, that passes every property once declared,
and a buggy twin with the same declaration that fails the property named. A stop-gradient on the wrong side is
such a bug.
"""
import dataclasses
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dualnet_ssl import regression
from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.reference_properties import reference_value
from dualnet_ssl.seeding import derive_seed
from dualnet_ssl.regression.network_properties import check_network


def _ce_first(logits):
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))


def moco(q, k, queue, tau=0.2, bug=None):
    """MoCo: keys and queue detached inside the loss; one positive key per query."""
    q, k, queue = (F.normalize(t, dim=-1) for t in (q, k, queue))
    q, k = (q.detach(), k) if bug == "wrong_side" else (q, k.detach())
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.detach().T
    return _ce_first(torch.cat([pos / tau, neg / (tau if bug != "tau_on_positive_only" else 1.0)], 1))


def moco_transposed(q, k, queue_dk, tau=0.2):
    """MoCo's own layout: the queue is stored (D, K)."""
    return moco(q, k, queue_dk.T, tau)


def bank_loss(z, indexes, bank, tau=0.2, bug=None):
    """Memory bank (instance discrimination): positive bank[indexes[i]], every other bank row a negative."""
    z, bank = F.normalize(z, dim=-1), F.normalize(bank, dim=-1).detach()
    target = torch.arange(len(z)) if bug == "ignores_indexes" else indexes
    return F.cross_entropy(z @ bank.T / tau, target)


def bank_negatives(q, k, bank, tau=0.2, bug=None):
    """Live positives, detached bank of negatives (a memory bank in a two-view loss)."""
    q, k, bank = (F.normalize(t, dim=-1) for t in (q, k, bank))
    k = k.detach() if bug == "positive_detached" else k
    return _ce_first(torch.cat([(q * k).sum(1, keepdim=True), q @ bank.detach().T], 1) / tau)


def nt_xent_unit(z0, z1, tau=0.2, bug=None, factor=1.0):
    """SimCLR's NT-Xent on rows its caller normalised (no normalisation inside)."""
    n = len(z0)
    z = torch.cat([z0, z1])
    logits = z @ z.T / tau
    if bug != "self_unmasked":
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return factor * F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


def supcon(z, labels, tau=0.2, form="out", bug=None):
    """Supervised contrastive loss over rows z (M, D) with one label per row; "out" or "in" form (docs/THEORY.md §5a)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(z), dtype=torch.bool)
    positive = same & ~eye
    logits = z @ z.T / tau
    log_prob = logits - torch.logsumexp(logits if bug == "self_in_denominator" else logits.masked_fill(eye, -1e9),
                                        dim=1, keepdim=True)
    if bug == "positives_from_wrong_mask":
        positive = ~same
    if form == "in":
        return -torch.logsumexp(log_prob.masked_fill(~positive, -1e9), dim=1).mean()
    return -((log_prob * positive).sum(1) / positive.sum(1)).mean()


def views_to_rows(z):
    """[N, V, D] -> (V N, D), view by view."""
    return z.transpose(0, 1).reshape(-1, z.shape[-1])


def supcon_views(z, labels=None, tau=0.2, form="out", bug=None):
    """HobbitLong-style SupCon: features [N, V, D] (unit rows), labels (N,) or None (SimCLR with V views)."""
    n, v, _ = z.shape
    labels = torch.arange(n) if labels is None else labels
    return supcon(views_to_rows(z), labels.repeat(v), tau, form, bug)


def logits_and_labels(z, n_views=2, tau=0.2, bug=None):
    """A loss returning (logits, labels) for a cross-entropy: views concatenated, positive logit in column 0."""
    n = len(z) // n_views
    z = F.normalize(z, dim=-1)
    index = torch.arange(n).repeat(n_views)
    sim = z @ z.T
    keep = ~torch.eye(len(z), dtype=torch.bool)
    sim, same = sim[keep].reshape(len(z), -1), (index[:, None] == index[None, :])[keep].reshape(len(z), -1)
    logits = torch.cat([sim[same].reshape(len(z), -1), sim[~same].reshape(len(z), -1)], 1) / tau
    labels = torch.zeros(len(z), dtype=torch.long) if bug != "label_on_a_negative" else torch.ones(len(z)).long()
    return logits, labels


TAU = 0.2
CASES = {
    # name: (correct fn, declaration, buggy fn, property the bug fails)
    "queue": (moco, dict(form="queue", gradient_to="anchors", normalises=True, reference="infonce"),
              lambda *a: moco(*a, bug="wrong_side"), "gradient_routing"),
    "queue_tau_on_positive_only": (moco, dict(form="queue", gradient_to="anchors", normalises=True,
                                              reference="infonce"),
                                   lambda *a: moco(*a, bug="tau_on_positive_only"), "reference_value"),
    "queue_transposed": (moco_transposed, dict(form="queue", gradient_to="anchors", transposed_bank=True,
                                               normalises=True, reference="infonce"),
                         lambda q, k, qd: moco(q, k, qd.T, bug="wrong_side"), "gradient_routing"),
    "memory_bank": (bank_loss, dict(form="bank", gradient_to="anchors", normalises=True, reference="infonce"),
                    lambda *a: bank_loss(*a, bug="ignores_indexes"), "weight_signs"),
    "bank_negatives_detached": (bank_negatives, dict(form="per_anchor", detached_negatives=True, normalises=True,
                                                     reference="infonce"),
                                lambda *a: bank_negatives(*a, bug="positive_detached"), "balance_total"),
    "unit_inputs": (nt_xent_unit, dict(unit_inputs=True, reference="infonce"),
                    lambda *a: nt_xent_unit(*a, bug="self_unmasked"), "balance_total"),
    "scale_declared": (lambda *a: nt_xent_unit(*a, factor=2 * TAU), dict(unit_inputs=True, reference="infonce",
                                                                         scale=2 * TAU),
                       nt_xent_unit, "reference_value"),
    "indexes_two_views": (lambda z, idx: supcon(z, idx), dict(form="indexes", unit_inputs=True, reference="infonce"),
                          lambda z, idx: supcon(z, idx, bug="self_in_denominator"), "balance_total"),
    "indexes_three_views_out": (lambda z, idx: supcon(z, idx), dict(form="indexes", n_views=3, unit_inputs=True,
                                                                    reference="supcon_out"),
                                lambda z, idx: supcon(z, idx, bug="positives_from_wrong_mask"), "weight_signs"),
    "views_simclr": (supcon_views, dict(form="views", n_views=3, unit_inputs=True, reference="supcon_out"),
                     lambda z: supcon_views(z, bug="self_in_denominator"), "balance_total"),
    "views_labels_out": (supcon_views, dict(form="views_labels", per_class=2, unit_inputs=True,
                                            reference="supcon_out"),
                         lambda z, y: supcon_views(z, y, bug="positives_from_wrong_mask"), "weight_signs"),
    "views_labels_in": (lambda z, y: supcon_views(z, y, form="in"),
                        dict(form="views_labels", per_class=2, unit_inputs=True, reference="supcon_in"),
                        lambda z, y: supcon_views(z, y, form="in", bug="positives_from_wrong_mask"), "weight_signs"),
    "logits_output": (logits_and_labels, dict(form="concat", output="logits", normalises=True, reference="infonce"),
                      lambda z: logits_and_labels(z, bug="label_on_a_negative"), "weight_signs"),
}
MUST_RUN = ("gradient_routing", "balance_total", "weight_signs", "reference_value", "reference_weights")


def subject(name: str, buggy: bool = False) -> regression.LossSubject:
    correct, declares, bug, _ = CASES[name]
    return regression.LossSubject(f"{name}{'-bug' if buggy else ''}",
                                  lambda: regression.LossAdapter(bug if buggy else correct, temperature=TAU,
                                                                 **declares))


RUN_AS_WORKED_EXAMPLES = ("queue_transposed", "memory_bank", "bank_negatives_detached")
"""CASES whose convention is a worked declaration of docs/REGRESSION.md (MoCo's (D, K) queue, the memory bank, the
per-anchor bank of negatives): their correct run is that example's, verbatim, below; their buggy twins run here."""

DISTINCT_CORRECT = sorted(set(CASES) - {"queue_tau_on_positive_only"} - set(RUN_AS_WORKED_EXAMPLES))
"""CASES whose correct loss is run here ('queue_tau_on_positive_only' has exactly the 'queue' case's loss and
declaration)."""


@pytest.mark.parametrize("name", DISTINCT_CORRECT)
def test_correct_convention_passes_every_property(name, seed, repro):
    results = {p: regression.check_loss(subject(name), p, seed) for p in regression.LOSS_PROPERTIES}
    failed = [r.summary() for r in results.values() if r.status == "fail"]
    assert not failed, f"false alarms on {name}: {failed}; {repro()}"
    skipped = {p: results[p].message for p in MUST_RUN if results[p].status != "pass"}
    assert not skipped, f"{name}: checks that should have run did not: {skipped}; {repro()}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_buggy_twin_fails_the_property_named(name, seed, repro):
    prop = CASES[name][3]
    result = regression.check_loss(subject(name, buggy=True), prop, seed)
    assert result.status == "fail" and result.summary().startswith(f"{prop} FAILED"), f"{result.summary()}; {repro()}"


def test_undeclared_constant_factor_is_named(seed, repro):
    result = regression.check_loss(subject("scale_declared", buggy=False).__class__(
        "scaled", lambda: regression.LossAdapter(lambda *a: nt_xent_unit(*a, factor=0.4), unit_inputs=True,
                                                 reference="infonce", temperature=TAU)), "reference_value", seed)
    assert result.status == "fail" and "x 0.4" in result.message and "declare scale=0.4" in result.message, \
        f"{result.summary()}; {repro()}"


def test_undeclared_stop_gradient_is_a_failure_that_points_to_the_declaration(seed, repro):
    """The same MoCo loss without gradient_to: its gradient is routed, the probe sees imbalance and says so."""
    undeclared = regression.LossSubject("moco-undeclared", lambda: regression.LossAdapter(
        moco, form="queue", normalises=True, reference="infonce", temperature=TAU))
    result = regression.check_loss(undeclared, "gradient_routing", seed)
    balance = regression.check_loss(undeclared, "balance_total", seed)
    assert balance.status == "fail", f"{balance.summary()}; {repro()}"
    assert "declare gradient_to" in result.message, f"{result.summary()}; {repro()}"


def test_unit_inputs_skip_the_rescaling_check_and_say_so(seed, repro):
    result = regression.check_loss(subject("unit_inputs"), "pairwise_structure", seed)
    assert result.status == "not_applicable" and "unit_inputs" in result.message, f"{result.summary()}; {repro()}"


def test_fixed_batch_size_is_probed_at_that_size(seed, repro):
    def only_eight(z0, z1):
        if len(z0) != 8:
            raise ValueError(f"built for batch 8, got {len(z0)}")
        return nt_xent_unit(z0, z1)

    fixed = regression.LossSubject("batch8", lambda: regression.LossAdapter(only_eight, unit_inputs=True,
                                                                            reference="infonce", temperature=TAU,
                                                                            batch_size=8))
    results = [regression.check_loss(fixed, p, seed) for p in MUST_RUN]
    assert all(r.status == "pass" for r in results), [r.summary() for r in results]


def test_out_form_allows_a_repelled_positive_but_not_a_negative_total(repro):
    """docs/THEORY.md §5a: in the "out" form one positive may carry a negative weight; their total may not."""
    adapter = regression.LossAdapter(supcon_views, form="views_labels", per_class=2, unit_inputs=True,
                                     reference="supcon_out", temperature=TAU)
    flipped = dataclasses.replace(adapter, fn=lambda z, y: -supcon_views(z, y), reference=None)
    seen_repelled = False
    for seed in range(6):
        probe = regression.make_probe(adapter, seed)
        ok = regression.conventions.positive_total_signs(adapter, probe)
        bad = regression.conventions.positive_total_signs(flipped, probe)
        assert ok.ok and not bad.ok, f"seed {seed}: {ok.message} / {bad.message}"
        seen_repelled |= " 0 positive pairs repelled" not in ok.message
    assert seen_repelled, "no probe showed a repelled positive: the 'out'-form rule was never exercised"


@pytest.mark.parametrize("factory", ["make_net_with_bias", "make_net_with_batchnorm"])
def test_bias_free_twin_runs_the_theorems_on_a_real_head(factory, seed, repro):
    net = regression.load_net(f"examples.mynets:{factory}")
    twin = check_network(net, "bias_free_twin", seed)
    assert twin.status == "pass" and "bias-free twin" in twin.message, f"{twin.summary()}; {repro()}"
    cls = check_network(net, "theorem_class", seed)
    assert cls.status == "not_applicable" and "of f_L is not K_l^T w_l" in cls.message, cls.summary()


def test_covariance_form_two_network_under_stop_gradient(seed, repro):
    """A queue loss on squared distances, keys from a second (momentum) network: docs/THEORY.md §3 two-network form."""
    def sq_moco(q, k, queue, tau=0.5):
        r_pos = 0.5 * ((q - k.detach()) ** 2).sum(1, keepdim=True)
        r_neg = 0.5 * ((q[:, None] - queue.detach()[None]) ** 2).sum(-1)
        return _ce_first(-torch.cat([r_pos, r_neg], 1) / tau)

    def biased(q, k, queue):
        return sq_moco(q, k, queue) + 0.1 * (q ** 2).sum()       # a pull to the origin: no pair weight explains it

    net = regression.NetSubject(regression.reference_mlp().name, regression.reference_mlp)
    for fn, ok in ((sq_moco, True), (biased, False)):
        loss = regression.LossSubject("sq-moco", lambda f=fn: regression.LossAdapter(f, form="queue",
                                                                                     gradient_to="anchors"))
        result = regression.check_covariance_form(loss, net, seed)
        assert (result.status == "pass") == ok and "two-network" in result.message, f"{result.summary()}; {repro()}"


# --- issue 18: per-input normalisation, who stops the gradient, and shapes that vary independently -----------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "REGRESSION.md"

KNOWN_OPEN = {("examples.conventions:SupConLoss", "stability_float32"):
              "its maximum includes the masked self-similarity, so its float32 goes NaN at tau = 0.01 on the "
              "orthogonal inverted points: the temperature policy of issue 18 item 1 decides that verdict"}
"""(loss, property) pairs this test does not hold to a pass, with the reason."""


def worked_commands() -> list[str]:
    """Every ``pytest --ssl-loss ...`` command of docs/REGRESSION.md's worked declarations, continuation lines
    joined, exactly as written there."""
    text = DOCS.read_text(encoding="utf-8")
    block = text[text.index("Worked declarations."):text.index("A loss whose bank or queue lives inside it")]
    commands, current = [], None
    for line in block.splitlines():
        body = line.strip()
        if body.startswith("pytest --ssl-loss"):
            current = [body]
            commands.append(current)
        elif current is not None and body and not body.startswith("#") and line.startswith("    "):
            current.append(body)
        else:
            current = None
    return [" ".join(part.rstrip("\\").strip() for part in c) for c in commands]


def from_command(command: str) -> regression.LossSubject:
    """The subject the plugin builds from the command's --ssl-loss, --ssl-loss-kwargs and --ssl-loss-declares."""
    words = shlex.split(command)
    options = dict(zip(words[1::2], words[2::2]))
    return regression.load_loss(options["--ssl-loss"], options.get("--ssl-loss-kwargs"),
                                options.get("--ssl-loss-declares"))


def test_docs_hold_the_worked_declarations():
    commands = worked_commands()
    assert len(commands) == 7 and all("--ssl-loss-declares" in c for c in commands), commands
    assert any('"unit_inputs": ["queue"]' in c and "MoCoLoss" in c for c in commands), "the MoCo example changed"


def _worked_declaration_passes(index: int, properties: tuple[str, ...], seed: int, repro) -> None:
    subject = from_command(worked_commands()[index])
    results = {p: regression.check_loss(subject, p, seed) for p in properties}
    failed = [r.summary() for p, r in results.items() if r.status == "fail" and (subject.name, p) not in KNOWN_OPEN]
    assert not failed, f"a worked declaration of the docs fails on its correct loss: {failed}; {repro()}"
    ran = [p for p in MUST_RUN if results[p].status == "pass"]
    assert ran == list(MUST_RUN), f"{subject.name}: {[results[p].summary() for p in MUST_RUN]}; {repro()}"


@pytest.mark.parametrize("index", range(7))
def test_every_worked_declaration_of_the_docs_runs_verbatim(index, seed, repro):
    """docs/REGRESSION.md's commands, read from the file: every property but the float32 sweep passes (or says
    why it does not apply); the slow test below adds stability_float32 and 20 seeds."""
    _worked_declaration_passes(index, tuple(p for p in regression.LOSS_PROPERTIES if p != "stability_float32"),
                               seed, repro)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(7))
def test_every_worked_declaration_of_the_docs_over_seeds(index, seed, repro):
    for k in range(20):
        _worked_declaration_passes(index, regression.LOSS_PROPERTIES, derive_seed(seed, f"worked {k}"), repro)


def moco_as_stored(q, k, queue, tau=TAU, detach_keys=True):
    """MoCo's reference code: q and k normalised here, the queue (K, D) used as stored (unit rows, not normalised
    again); keys detached here unless ``detach_keys`` is False (the bug: gradient reaches the keys)."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    k = k.detach() if detach_keys else k
    return _ce_first(torch.cat([(q * k).sum(1, keepdim=True), q @ queue.detach().T], 1) / tau)


MOCO_ROUTING = dict(form="queue", gradient_to="anchors", reference="infonce", temperature=TAU)


def test_rescaling_check_names_the_input_that_breaks_it(seed, repro):
    """The queue arrives unit and is not normalised again: declared `normalises` alone, the rescaling check fails
    and names the queue; declared as it is, the check rescales q and k only, and passes."""
    wrong = regression.LossSubject("moco-all-normalised", lambda: regression.LossAdapter(
        moco_as_stored, normalises=True, **MOCO_ROUTING))
    result = regression.check_loss(wrong, "pairwise_structure", seed)
    assert result.status == "fail" and "rescaling each row of queue" in result.message, f"{result.summary()}; {repro()}"
    assert "declare unit_inputs=['queue']" in result.message, result.summary()
    right = regression.LossSubject("moco-as-stored", lambda: regression.LossAdapter(
        moco_as_stored, normalises=True, unit_inputs=["queue"], detached_by="loss", **MOCO_ROUTING))
    result = regression.check_loss(right, "pairwise_structure", seed)      # every property: the worked MoCo example
    assert result.status == "pass" and "rows of queue arrive as unit rows" in result.message, repro()


def test_a_loss_meant_to_detach_its_keys_that_does_not_is_named(seed, repro):
    """detached_by='loss': gradient reaching the keys fails gradient_routing, naming k; with the stop-gradient
    left to the caller (the default) the same gradient is ignored, as before."""
    def leaky(*args):
        return moco_as_stored(*args, detach_keys=False)

    declares = dict(normalises=True, unit_inputs=["queue"], **MOCO_ROUTING)
    own = regression.LossSubject("moco-leaky", lambda: regression.LossAdapter(leaky, detached_by="loss", **declares))
    result = regression.check_loss(own, "gradient_routing", seed)
    assert result.status == "fail" and "gradient reaches points declared detached: k (points" in result.message, \
        f"{result.summary()}; {repro()}"
    assert "queue (points" not in result.message, result.summary()       # the queue is detached: not named
    callers = regression.LossSubject("moco-leaky-caller", lambda: regression.LossAdapter(leaky, **declares))
    assert regression.check_loss(callers, "gradient_routing", seed).status == "pass", repro()


@pytest.mark.parametrize("declares, says", [
    (dict(form="queue", normalises=True, unit_inputs=["bank"]), "not inputs of the form 'queue'"),
    (dict(form="queue", normalises=["q", "k"]), "neither normalised by the loss nor declared unit rows"),
    (dict(form="queue", normalises=["q", "k"], unit_inputs=["k", "queue"]), "both normalised by the loss"),
    (dict(form="queue", normalises=True, detached_by="loss"), "but none is declared"),
    (dict(normalises="yes"), "true, false or a list of input names"),
])
def test_bad_normalisation_or_routing_declarations_are_usage_errors(declares, says):
    with pytest.raises(BadInput, match=says):
        regression.LossAdapter(moco_as_stored, **declares)


def per_width(z0, z1):
    """NT-Xent divided by the embedding width: at the probe's width a constant factor, at any other not."""
    return nt_xent_unit(z0, z1) / z0.shape[1]


def test_a_factor_that_scales_with_the_embedding_width_is_named(seed, repro):
    """At batch 8 (16 points, width 16) the loss is 1/16 x NT-Xent; declared so, the other widths expose it, with a
    reference (reference_value) and without one (rotation_invariance)."""
    declared = regression.LossSubject("per-width", lambda: regression.LossAdapter(
        per_width, unit_inputs=True, reference="infonce", temperature=TAU, batch_size=8, scale=1 / 16))
    result = regression.check_loss(declared, "reference_value", seed)
    assert result.status == "fail" and "the factor scales with the embedding width" in result.message, \
        f"{result.summary()}; {repro()}"
    bare = regression.LossSubject("per-width-bare", lambda: regression.LossAdapter(per_width, unit_inputs=True))
    result = regression.check_loss(bare, "rotation_invariance", seed)
    assert result.status == "fail" and "the factor scales with the embedding width" in result.message, \
        f"{result.summary()}; {repro()}"


def supcon_off_by_one(z, labels, tau=TAU):
    """SupCon ("out" form) dividing each anchor's sum by |P| + 1: with equal classes a constant factor."""
    rows, same = views_to_rows(z), (labels[:, None] == labels[None, :]).repeat(z.shape[1], z.shape[1])
    eye = torch.eye(len(rows), dtype=torch.bool)
    positive = same & ~eye
    logits = rows @ rows.T / tau
    log_prob = logits - torch.logsumexp(logits.masked_fill(eye, -1e9), dim=1, keepdim=True)
    return -((log_prob * positive).sum(1) / (positive.sum(1) + 1)).mean()


def test_an_off_by_one_positive_count_is_no_constant_factor(seed, repro):
    """With 3 positives per anchor the loss is 0.75 x SupCon; declared so, unequal class sizes expose it."""
    declared = regression.LossSubject("supcon-off-by-one", lambda: regression.LossAdapter(
        supcon_off_by_one, form="views_labels", per_class=2, unit_inputs=True, reference="supcon_out",
        temperature=TAU, scale=0.75))
    result = regression.check_loss(declared, "reference_value", seed)
    assert result.status == "fail" and "the factor changes with the number of positives per anchor" in \
        result.message and "classes of unequal sizes" in result.message, f"{result.summary()}; {repro()}"


def third_view_as_negative(z, indexes, tau=TAU):
    """Three views concatenated; anchors of views 0 and 1 leave view 2 out of their positives (it stays in the
    denominator, so it is pushed away), view 2's anchors are right."""
    n = len(z) // 3
    view = torch.arange(len(z)) // n
    eye = torch.eye(len(z), dtype=torch.bool)
    positive = (indexes[:, None] == indexes[None, :]) & ~eye & ~((view[:, None] < 2) & (view[None, :] == 2))
    logits = z @ z.T / tau
    log_prob = logits - torch.logsumexp(logits.masked_fill(eye, -1e9), dim=1, keepdim=True)
    return -((log_prob * positive).sum(1) / positive.sum(1)).mean()


def test_a_repelled_positive_in_three_views_is_caught_without_a_reference(seed, repro):
    """No reference declared: the 'out'-form rule alone lets the repelled positives pass at the probe; at points
    where each anchor's positives are equally far, no form repels one, and weight_signs fails."""
    bug = regression.LossSubject("third-view-negative", lambda: regression.LossAdapter(
        third_view_as_negative, form="indexes", n_views=3, unit_inputs=True))
    result = regression.check_loss(bug, "weight_signs", seed)
    assert result.status == "fail" and "positive pairs are repelled at points where each anchor's positives are " \
        "all equally far" in result.message, f"{result.summary()}; {repro()}"
    correct = regression.LossSubject("three-views", lambda: regression.LossAdapter(
        lambda z, idx: supcon(z, idx), form="indexes", n_views=3, unit_inputs=True))
    assert regression.check_loss(correct, "weight_signs", seed).status == "pass", repro()


@pytest.mark.parametrize("form", ["out", "in"])
def test_correct_supcon_with_unequal_class_sizes_raises_no_alarm(form, seed, repro):
    """The shape variants (unequal classes, one view more, other widths) raise no false alarm, over 3 seeds."""
    subject = regression.LossSubject(f"supcon-{form}", lambda: regression.LossAdapter(
        lambda z, y: supcon_views(z, y, form=form), form="views_labels", per_class=2, unit_inputs=True,
        reference=f"supcon_{form}", temperature=TAU))
    for k in range(3):
        drawn = derive_seed(seed, f"unequal classes {k}")
        for prop in ("rotation_invariance", "reference_value", "weight_signs"):
            result = regression.check_loss(subject, prop, drawn)
            assert result.status == "pass", f"{result.summary()}; seed {drawn}; {repro()}"
        adapter = subject.build()                              # the default probe says which shapes it tried
        tried = reference_value(adapter, regression.make_probe(adapter, drawn))
        assert tried.ok and "classes of unequal sizes" in tried.message and "3 views" in tried.message, tried.message
