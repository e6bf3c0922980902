"""The regression properties, one record each: the only list of them (docs/REGRESSION.md, "The properties").

Adding a property: write its check, add one ``Property`` record to ``REGISTRY`` below (name, what it needs, the
check, its batch-size policy, a one-line summary), and a row to the property table of docs/REGRESSION.md
(tests/test_property_registry.py holds the table and this registry equal). The plugin, ``check_loss`` and
``check_network`` read nothing else. The check's signature follows what the property needs:

- ``LOSS``: ``check(adapter, probe) -> Verdict`` (``OWN_SIZES``: ``check(adapter, rebuild, seed) -> Verdict``, with
  ``rebuild`` the ``engine.Rebuild`` of the subject's factory);
- ``NETWORK``: ``check(net_adapter, seed) -> Verdict``;
- ``LOSS_ON_NETWORK``: ``check(subjects, seed) -> CheckResult``;
- ``LOSS_DISTRIBUTED``: ``check(loss_subject, world_size, seed) -> CheckResult``, one item per declared W;
- ``NON_CONTRASTIVE``: ``check(declaration, batch_size, seed) -> CheckResult``, one item per batch size.

Batch-size policies (loss properties): ``EVERY_SIZE``, the probe at the default size and at batches.LARGE_BATCHES
(or at the declared ``batch_size`` alone); ``OWN_SIZES``, the check chooses its probes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression import loss_properties as loss
from dualnet_ssl.regression import network_properties as network
from dualnet_ssl.regression import noncontrastive
from dualnet_ssl.regression.batches import over_batches
from dualnet_ssl.regression.builtin import reference_mlp
from dualnet_ssl.regression.conventions import gradient_routing
from dualnet_ssl.regression.declared import declared_pairs
from dualnet_ssl.regression.distributed import DISTRIBUTED_PROPERTY, check_distributed
from dualnet_ssl.regression.engine import rebuilder
from dualnet_ssl.regression.hints import with_routing_hint
from dualnet_ssl.regression.loading import LossSubject, NetSubject
from dualnet_ssl.regression.precision import check_float32
from dualnet_ssl.regression.reference_properties import reference_value, reference_weights
from dualnet_ssl.regression.verdicts import run_check
from dualnet_ssl.results import CheckResult

LOSS, NETWORK, LOSS_ON_NETWORK, LOSS_DISTRIBUTED, NON_CONTRASTIVE = (
    "loss", "network", "loss on a network", "loss, distributed", "non-contrastive loss")
EVERY_SIZE, OWN_SIZES = "every size", "own sizes"


@dataclass(frozen=True)
class Subjects:
    """What a run checks: a contrastive loss, a network, world sizes for the distributed property, or a
    non-contrastive loss."""

    loss: LossSubject | None = None
    net: NetSubject | None = None
    world_sizes: tuple[int, ...] = ()
    noncontrastive: noncontrastive.NonContrastiveLoss | None = None


@dataclass(frozen=True)
class Property:
    """One regression property: its ``name`` (the test and report name), what it ``needs``, its ``check``, its
    batch-size policy ``sizes`` and a one-line ``summary``."""

    name: str
    needs: str
    check: Callable
    sizes: str
    summary: str


REGISTRY = (
    Property("rotation_invariance", LOSS, loss.rotation_invariance, EVERY_SIZE,
             "L(ZQ) = L(Z): a function of pairwise similarities, blind to the embedding width"),
    Property("pairwise_structure", LOSS, loss.pairwise_structure, EVERY_SIZE,
             "blind to a common translation, or to row scales of the inputs it normalises"),
    Property("gradient_symmetry", LOSS, loss.gradient_symmetry, EVERY_SIZE,
             "Z^T dL/dZ symmetric: no stop-gradient on part of a pair"),
    Property("gradient_routing", LOSS, gradient_routing, EVERY_SIZE,
             "the declared stop-gradient holds: gradient reaches exactly the declared points"),
    Property("balance_total", LOSS, loss.balance_total, EVERY_SIZE, "Theorem 2: sum over all pairs of dL/dr = 0"),
    Property("balance_per_anchor", LOSS, loss.balance_per_anchor, EVERY_SIZE,
             "Theorem 2 anchor by anchor, where a probe can decide it"),
    Property("weight_signs", LOSS, loss.weight_signs, EVERY_SIZE,
             "dL/dr > 0 on declared positives, < 0 on declared negatives"),
    Property("undeclared_pairs", LOSS, loss.undeclared_pairs, EVERY_SIZE, "pairs not declared get no weight"),
    Property("declared_pairs", LOSS, declared_pairs, EVERY_SIZE,
             "every declared pair carries weight somewhere, and the weights fit the declared layout"),
    Property("reference_value", LOSS, reference_value, EVERY_SIZE,
             "the value equals scale x the declared reference, at every shape"),
    Property("reference_weights", LOSS, reference_weights, EVERY_SIZE,
             "every pair weight equals the declared reference's"),
    Property("stability_float32", LOSS, check_float32, OWN_SIZES,
             "float32 value and pair weights against float64 at the declared temperature(s)"),
    Property("theorem_class", NETWORK, network.theorem_class, OWN_SIZES,
             "the network is in the theorems' class (bias-free, positively homogeneous)"),
    Property("theorem1_pair", NETWORK, network.theorem1_pair, OWN_SIZES,
             "Theorem 1 at every layer, against the closed form"),
    Property("theorem3_operator", NETWORK, network.theorem3_operator, OWN_SIZES,
             "Theorem 3, exact, on an enumerated distribution"),
    Property("bias_free_twin", NETWORK, network.twin_theorems, OWN_SIZES,
             "Theorems 1 and 3 on the network's bias-free twin, when it is outside the class"),
    Property(network.COVARIANCE_PROPERTY, LOSS_ON_NETWORK,
             lambda subjects, seed: network.check_covariance_form(
                 subjects.loss, subjects.net or NetSubject(reference_mlp().name, reference_mlp), seed),
             OWN_SIZES, "Theorems 1, 3-4 on a batch: the layer gradient is the covariance form of the pair weights"),
    Property(DISTRIBUTED_PROPERTY, LOSS_DISTRIBUTED, check_distributed, OWN_SIZES,
             "in W real processes, each rank's gradient / W equals the single-process rows"),
    Property("stop_gradient", NON_CONTRASTIVE, noncontrastive.check_stop_gradient, OWN_SIZES,
             "no gradient reaches the target; every prediction gets one"),
    Property("reference_value_and_gradient", NON_CONTRASTIVE, noncontrastive.check_reference, OWN_SIZES,
             "value and gradient equal the declared negative cosine or normalised MSE"),
    Property("float32_accuracy", NON_CONTRASTIVE, noncontrastive.check_float32, OWN_SIZES,
             "float32 value and gradient against float64"),
)
"""Every regression property, in the order the plugin runs them."""

BY_NAME = {p.name: p for p in REGISTRY}
LOSS_PROPERTIES = tuple(p.name for p in REGISTRY if p.needs == LOSS)
NET_PROPERTIES = tuple(p.name for p in REGISTRY if p.needs == NETWORK)


def _lookup(name: str, needs: str) -> Property:
    prop = BY_NAME.get(name)
    if prop is None or prop.needs != needs:
        known = tuple(p.name for p in REGISTRY if p.needs == needs)
        raise BadInput(f"unknown {needs} property {name!r}; known: {known}")
    return prop


def check_loss(subject: LossSubject, name: str, seed: int) -> CheckResult:
    """One loss property of ``subject`` at ``seed``, at the batch sizes its record says."""
    prop = _lookup(name, LOSS)

    def verdict():
        adapter = subject.build()
        if prop.sizes == OWN_SIZES:
            return prop.check(adapter, rebuilder(subject.build), seed)
        return over_batches(prop.check, adapter, seed)

    def with_hint():   # a failing record names an undeclared stop-gradient when that is the likely cause
        return with_routing_hint(verdict(), subject.build, seed)

    return run_check(name, subject.name, seed, with_hint)


def check_network(subject: NetSubject, name: str, seed: int) -> CheckResult:
    """One network property of ``subject`` at ``seed``."""
    prop = _lookup(name, NETWORK)
    return run_check(name, subject.name, seed, lambda: prop.check(subject.build(), seed), network=subject.name)


def _slug(name: str) -> str:
    return re.sub(r"[^\w.]+", "-", name).strip("-")


def checks_for(subjects: Subjects) -> list[tuple[str, str, Callable[[int], CheckResult]]]:
    """(group, property label, check(seed)) for every registered property ``subjects`` can be checked for, in the
    registry's order."""
    loss, net, decl = subjects.loss, subjects.net, subjects.noncontrastive
    group = f"loss[{_slug(loss.name)}]" if loss is not None else ""
    checks = []
    for prop in REGISTRY:
        if prop.needs == LOSS and loss is not None:
            checks.append((group, prop.name, lambda seed, p=prop.name: check_loss(loss, p, seed)))
        elif prop.needs == NETWORK and net is not None:
            checks.append((f"network[{_slug(net.name)}]", prop.name, lambda seed, p=prop.name: check_network(net, p, seed)))
        elif prop.needs == LOSS_ON_NETWORK and loss is not None:
            on = net.name if net is not None else reference_mlp().name
            checks.append((f"{group}-on[{_slug(on)}]", prop.name, lambda seed, f=prop.check: f(subjects, seed)))
        elif prop.needs == LOSS_DISTRIBUTED and loss is not None:
            checks += [(group, f"{prop.name}_W{w}", lambda seed, f=prop.check, w=w: f(loss, w, seed))
                       for w in subjects.world_sizes]
        elif prop.needs == NON_CONTRASTIVE and decl is not None:
            checks += [(f"loss[{_slug(decl.label)}]-batch{batch}", prop.name,
                        lambda seed, f=prop.check, b=batch: f(decl, b, seed)) for batch in noncontrastive.BATCH_SIZES]
    return checks
