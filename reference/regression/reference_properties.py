"""Value and pair weights of a declared loss against its reference (docs/REGRESSION.md, "The properties")."""
from __future__ import annotations

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.losses import infonce
from dualnet_ssl.regression.declarations import LossAdapter, PairLossBatch, reduce_anchors
from dualnet_ssl.regression.probe import Probe, recover_weights, reference_pair_weights
from dualnet_ssl.regression.verdicts import Verdict, compare


def _require_reference(adapter: LossAdapter) -> None:
    if adapter.reference is None:
        raise NotApplicable("the adapter declares no reference loss; declare reference='infonce' with its temperature "
                            "to compare value and weights with L_nce^tau / tau (THEORY.md §4)")


def reference_value(adapter: LossAdapter, probe: Probe) -> Verdict:
    _require_reference(adapter)
    z = probe.points()
    expected = PairLossBatch(infonce(adapter.temperature), adapter, 1.0 / adapter.temperature)
    want = reduce_anchors(expected.values(probe.layout, z), adapter.reduction)
    v = compare(adapter.evaluate(z, probe.layout), want, kind="exact",
                 what=f"loss value vs reference L_nce/tau (tau={adapter.temperature:g}, {adapter.reduction} over "
                      f"{probe.layout.anchors.numel()} anchors)")
    hint = ("; a wrong temperature (applied twice?), a sum where mean is declared, or a masking bug changes the "
            "value")
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))


def reference_weights(adapter: LossAdapter, probe: Probe) -> Verdict:
    _require_reference(adapter)
    got = recover_weights(adapter, probe)
    v = compare(got.pairs, reference_pair_weights(adapter, probe.layout, probe.points()), kind="gradient",
                 what=f"per-pair weights dL/dr vs reference L_nce/tau (tau={adapter.temperature:g}), pair (i, j)",
                 also=(got.value,))
    hint = "; the value may agree while the gradient does not: a detach() or a block-wise normalisation shows here"
    return Verdict(v.ok, v.measured, v.tolerance, v.message + ("" if v.ok else hint))
