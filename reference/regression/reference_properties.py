"""Value and pair weights of a declared loss against its reference, times its declared ``scale``
(docs/REGRESSION.md, "The properties"; docs/THEORY.md §4, §5 and §5a).

References, per anchor, with logits ``-r/tau`` (``r = 1 - cos`` on unit rows, so ``cos/tau`` up to a constant):

- ``infonce``: ``-log softmax`` at the one positive, over the positive and the negatives: ``L_nce^tau / tau``;
- ``supcon_out``: the mean over the positives of ``-log softmax`` over every other point ("out" form, §5a);
- ``supcon_in``: ``-log`` of the softmax mass of all positives ("in" form, §5a).
"""
from __future__ import annotations

import torch

from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.losses import infonce_weights, pair_distance
from dualnet_ssl.regression.declarations import Layout, LossAdapter
from dualnet_ssl.regression.engine import evaluate
from dualnet_ssl.regression.geometry import Probe, batch_sizes
from dualnet_ssl.regression.probe import assemble_pair_weights, recover_weights
from dualnet_ssl.regression.reference_losses import anchor_distances, anchor_weight, reduce_anchors
from dualnet_ssl.regression.shapes import BATCH, POSITIVES, WIDTH, Variant, counts_text, other_batches, variants
from dualnet_ssl.regression.verdicts import Verdict, compare

NAMES = {"infonce": "NT-Xent/InfoNCE (L_nce/tau)", "supcon_out": "SupCon, 'out' form",
         "supcon_in": "SupCon, 'in' form"}


def _require_reference(adapter: LossAdapter) -> None:
    if adapter.reference is None:
        raise NotApplicable("the adapter declares no reference loss; declare reference='infonce' (or 'supcon_out', "
                            "'supcon_in' with several positives) and its temperature to compare value and weights "
                            "(docs/THEORY.md §4, §5a)")


def anchor_reference(reference: str, tau: float, r_pos: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
    """(A,) reference loss per anchor from r_+ (A,) or (A, P) and r_- (A, H)."""
    r_pos = r_pos.reshape(len(r_neg), -1)
    pos, every = -r_pos / tau, torch.cat([-r_pos, -r_neg], dim=1) / tau
    log_z = torch.logsumexp(every, dim=1)
    if reference == "supcon_in":
        return log_z - torch.logsumexp(pos, dim=1)
    return (log_z[:, None] - pos).mean(dim=1)


def reference_loss(adapter: LossAdapter, layout: Layout, z: torch.Tensor) -> torch.Tensor:
    """The declared reference at points ``z`` with the declared reduction (without ``scale``)."""
    tau = float(adapter.temperature)
    if layout.positives.shape[1] == 0:       # ragged: classes of unequal sizes (signatures.unequal_classes_layout)
        unit = torch.nn.functional.normalize(z, dim=-1) if adapter.on_unit_rows else z
        r = pair_distance(unit[:, None, :], unit[None, :, :])
        same = layout.groups[layout.anchors][:, None] == layout.groups[None, :]
        positive = same & (layout.anchors[:, None] != torch.arange(layout.n_points)[None, :])
        counts = positive.sum(1)
        values = torch.zeros(len(layout.anchors), dtype=r.dtype)
        for count in counts.unique():          # anchors with equal positive counts are one rectangular batch
            rows = torch.nonzero(counts == count).flatten()
            r_rows = r[layout.anchors[rows]]
            values[rows] = anchor_reference(adapter.reference, tau, r_rows[positive[rows]].reshape(len(rows), -1),
                                            r_rows[~same[rows]].reshape(len(rows), -1))
    else:
        values = anchor_reference(adapter.reference, tau, *anchor_distances(layout, z, adapter.on_unit_rows))
    return reduce_anchors(values, adapter.reduction)


def reference_pair_weights(adapter: LossAdapter, layout: Layout, z: torch.Tensor) -> torch.Tensor:
    """dL/dr_ij of the declared reference (without ``scale``): closed form for InfoNCE (docs/THEORY.md §5), autograd
    of the definition above for the supervised-contrastive forms (§5a)."""
    tau, weight = float(adapter.temperature), anchor_weight(layout, adapter.reduction)
    if adapter.reference == "infonce":
        r_pos, r_neg = anchor_distances(layout, z, adapter.on_unit_rows)
        beta, beta_k = infonce_weights(r_pos, r_neg, tau=tau)
        return assemble_pair_weights(layout, beta, beta_k, weight / tau)
    unit = torch.nn.functional.normalize(z, dim=-1) if adapter.on_unit_rows else z
    r = pair_distance(unit[:, None, :], unit[None, :, :]).detach().requires_grad_(True)
    anchors = layout.anchors[:, None]
    total = anchor_reference(adapter.reference, tau, r[anchors, layout.positives], r[anchors, layout.negatives])
    (grad,) = torch.autograd.grad(weight * total.sum(), r)
    return (grad + grad.T) * (1 - torch.eye(len(r), dtype=grad.dtype))


def _what(adapter: LossAdapter) -> str:
    factor = f"{adapter.scale:g} x " if adapter.scale is not None else ""
    return f"{factor}{NAMES[adapter.reference]} (tau={adapter.temperature:g})"


def _constant_factor(adapter: LossAdapter, probe: Probe) -> float | None:
    """c when the loss equals c x its reference in value and in every pair weight (c != the declared scale)."""
    z = probe.points()
    got, want = evaluate(adapter, z, probe.layout).detach().double(), reference_loss(adapter, probe.layout, z)
    c = float((got * want).sum() / (want * want).sum())
    if not c > 0 or abs(c - (adapter.scale or 1.0)) < 1e-9:
        return None
    weights = recover_weights(adapter, probe)
    same = (compare(got, c * want, kind="exact", what="").ok and
            compare(weights.pairs, c * reference_pair_weights(adapter, probe.layout, z), kind="gradient", what="",
                    also=(weights.value,)).ok)
    return c if same else None


def _factor(got: torch.Tensor, want: torch.Tensor) -> float:
    """The least-squares c in got = c x want."""
    got, want = got.detach().double(), want.detach().double()
    return float((got * want).sum() / (want * want).sum())


def _at_shapes(adapter: LossAdapter, probe: Probe, refused: list[str] | None = None, batches: bool = False
               ) -> list[tuple[Variant, Verdict, float]]:
    """The value against scale x reference at every shape variant (module ``shapes``), with the factor found there;
    a variant the loss cannot be called at (it raises) is left out and named in ``refused``; with ``batches``, the
    probe's other batch sizes too."""
    found = []
    for variant in variants(adapter, probe) + (other_batches(adapter, probe) if batches else []):
        try:
            got = evaluate(variant.adapter, variant.z, variant.layout)
        except Exception as err:   # e.g. a loss built for its declared number of views: that shape is not its own
            if refused is not None:
                refused.append(f"{variant.shape}: {type(err).__name__}: {err}")
            continue
        at = variant.z if variant.same_distances_as is None else variant.same_distances_as   # the cheaper twin
        want = reference_loss(variant.adapter, variant.layout, at)
        v = compare(got, (adapter.scale or 1.0) * want, kind="exact",
                    what=f"loss value vs reference {_what(adapter)} at {variant.shape}")
        found.append((variant, v, _factor(got, want)))
    return found


def _at_probe(probe: Probe) -> str:
    return f"the probe (N={probe.layout.n_samples}, width {probe.dim}, {counts_text(probe.layout)})"


CAUSES = {WIDTH: "a division by the embedding width, a mean over the feature axis?",
          POSITIVES: "a positive count off by one, a mean over a fixed number of positives?",
          BATCH: "a division by a fixed or wrong count of anchors or pairs, a sum where a mean is meant?"}


def _dependency(c: float, shapes: list[tuple[Variant, Verdict, float]], shape: str) -> str:
    """'; the factor scales with the embedding width (...)' when a shape variant's factor differs from ``c``."""
    moved = [(variant, f) for variant, w, f in shapes   # two factors differ beyond the value's own tolerance
             if abs(f - c) > w.tolerance.atol + w.tolerance.rtol * abs(c)]
    if not moved:
        return ""
    variant = moved[0][0]
    figures = ", ".join(f"{f:.6g} at {w.shape}" for w, f in moved if w.dependency == variant.dependency)
    verb = "scales" if variant.dependency == WIDTH else "changes"
    return (f"; the factor {verb} with {variant.dependency}: loss / reference = {c:.6g} at {shape}, {figures}; no "
            f"constant scale fits, so the loss is wrong at real shapes ({CAUSES[variant.dependency]})")


def _with_hint(v: Verdict, adapter: LossAdapter, probe: Probe, hint: str) -> Verdict:
    if v.ok:
        return v
    c = _constant_factor(adapter, probe)
    if c is not None:
        moved = _dependency(c, _at_shapes(adapter, probe, batches=True), _at_probe(probe))
        hint = moved or (f"; it matches {NAMES[adapter.reference]} x {c:.6g} in value and in every pair weight: a "
                         f"constant factor (docs/THEORY.md §5a). If it is deliberate, declare scale={c:.6g}")
    return Verdict(False, v.measured, v.tolerance, v.message + hint)


def reference_value(adapter: LossAdapter, probe: Probe) -> Verdict:
    """The value equals scale x the reference at the probe and, at the default batch size, at every shape variant
    (module ``shapes``)."""
    _require_reference(adapter)
    z = probe.points()
    got, want = evaluate(adapter, z, probe.layout), reference_loss(adapter, probe.layout, z)
    v = compare(got, (adapter.scale or 1.0) * want, kind="exact",
                what=f"loss value vs reference {_what(adapter)}, {adapter.reduction} over "
                     f"{probe.layout.anchors.numel()} anchors")
    if not v.ok:
        return _with_hint(v, adapter, probe, "; a wrong temperature (applied twice?), a sum where mean is declared, "
                                             "or a masking bug changes the value")
    if probe.layout.n_samples != batch_sizes(adapter)[0]:
        return v           # the shape variants run at the default batch size; the batch sizes vary on their own
    refused: list[str] = []
    shapes = _at_shapes(adapter, probe, refused)
    failed = [(variant, w) for variant, w, _ in shapes if not w.ok]
    if not failed:
        held = (f"; it holds at {len(shapes)} other shapes too (" + "; ".join(variant.shape for variant, _, _ in shapes)
                + ")" if shapes else "")
        held += f"; the loss cannot be called at {'; '.join(refused)}, so those shapes were not tried" if refused else ""
        return Verdict(True, v.measured, v.tolerance, v.message + held)
    variant, w = failed[0]
    moved = _dependency(_factor(got, want), shapes, _at_probe(probe))
    return Verdict(False, w.measured, w.tolerance, f"it holds at the probe but not at {variant.shape}: {w.message}"
                   + (moved or f"; the loss depends on {variant.dependency}"))


def reference_weights(adapter: LossAdapter, probe: Probe) -> Verdict:
    _require_reference(adapter)
    got = recover_weights(adapter, probe)
    want = (adapter.scale or 1.0) * reference_pair_weights(adapter, probe.layout, probe.points())
    v = compare(got.pairs, want, kind="gradient", also=(got.value,),
                what=f"per-pair weights dL/dr vs reference {_what(adapter)}, pair (i, j)")
    return _with_hint(v, adapter, probe, "; the value may agree while the gradient does not: a detach() or a "
                                         "block-wise normalisation shows here")
