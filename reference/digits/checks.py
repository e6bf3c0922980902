"""Checkers for the digits study's measured claims (docs/DIGITS.md): per-run figures, held to the thresholds
of the "digits study" section of ``dualnet_ssl.thresholds`` on seeds that did not set them."""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch

from dualnet_ssl.compare import assert_identity, fail
from dualnet_ssl.digits.training import RunResult
from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.errors import BadInput
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.operators import residue
from dualnet_ssl.thresholds import Threshold


def run_figures(run: RunResult) -> dict[str, float]:
    """The figures a claim can be stated on, for one run (init = first record, final = last). In a normalised-output
    run the split is the one at the unit-output-norm network and the spread that of the normalised outputs
    (``training.Tracker.record``)."""
    figures = {"final_loss": run.final_loss}
    if run.spread:
        figures["spread_drop"] = run.spread[0] / run.spread[-1]
    for i, layer in enumerate(run.feature_layers):
        figures[f"probe_gain {layer}"] = run.probe["final"][i] - run.probe["init"][i]
        figures[f"knn_change {layer}"] = run.knn["final"][i] - run.knn["init"][i]
        figures[f"probe_final {layer}"] = run.probe["final"][i]
    for l, layer in enumerate(run.weight_layers if run.theta_norm else []):
        figures[f"theta_drop {layer}"] = run.theta_norm[0][l] / run.theta_norm[-1][l]
        figures[f"final_ratio {layer}"] = run.ratio(l)[-1]
        figures[f"ratio_drop {layer}"] = run.ratio(l)[0] / run.ratio(l)[-1]
    for h in range(len(run.unit_ratio[0]) if run.unit_ratio else 0):
        figures[f"unit_ratio_gain hidden {h + 1}"] = run.unit_ratio[-1][h] / run.unit_ratio[0][h]
    return figures


def check_claim(claim: str, figure: str, values: dict[int, float], threshold: Threshold, *, above: bool = True,
                context: str = "") -> None:
    """Every seed's ``figure`` must be >= ``threshold`` (``above``) or <= it; ``values`` maps seed -> figure."""
    __tracebackhide__ = True
    if not values:
        raise BadInput(f"claim '{claim}': no runs to check")
    tail = f" [{context}]" if context else ""
    bad = {s: v for s, v in values.items() if not math.isfinite(v) or not (v >= threshold.value if above
                                                                           else v <= threshold.value)}
    if bad:
        shown = ", ".join(f"seed {s}: {v:.4g}" for s, v in values.items())
        seed, worst = next(iter(bad.items()))
        text = (f"digits claim '{claim}' does not hold: {figure} must be {'>=' if above else '<='} {threshold}; "
                f"measured {shown}{tail}")
        fail(f"digits claim '{claim}'", f"{figure} = {worst:.4g}", limit=threshold,
             allowed=f"{'>=' if above else '<='} {threshold.value:g}", figure=worst, context=context,
             where=f"seed {seed}", text=text)


def check_unit_output_split(net: BiasFreeMLP, data: DiscreteAugmentedData, loss, n_negatives: int,
                            theta_norms: Sequence[float], main_norms: Sequence[float], *, context: str = "") -> None:
    """A normalised run's record of Theorem 4's split must be the split at ``net`` with its last layer rescaled by
    c = 1 / E||f_L|| (mean over ``data``'s views, weighted by their probabilities), in float64. Recomputed here from
    that definition: c by one forward pass of the flat views; the copy's output must be c f_L (positive homogeneity,
    tolerance exact); then ``||theta_l||`` and ``||2 OP_l w_l||`` per weight layer against the recorded ones
    (tolerance gradient)."""
    __tracebackhide__ = True
    plain = copy.deepcopy(net).double()
    with torch.no_grad():
        f = plain(data.flat_views())
        c = 1.0 / float((data.view_probs() * f.norm(dim=1)).sum())
        scaled = copy.deepcopy(plain)
        scaled.weights[-1].mul_(c)
        assert_identity(scaled(data.flat_views()), c * f, what="output of the rescaled network = c f_L (positive "
                        "homogeneity)", kind="exact", context=context)
    splits = [residue(scaled, name, data, loss, n_negatives) for name in scaled.layer_names()]
    want = torch.tensor([[float(s.theta.norm()), float(s.main.norm())] for s in splits], dtype=torch.float64)
    got = torch.tensor([list(theta_norms), list(main_norms)], dtype=torch.float64).T
    if got.shape != want.shape:
        raise BadInput(f"need ||theta|| and ||2 OP w|| for each of {len(splits)} layers, got shape {tuple(got.shape)}")
    assert_identity(got, want, what="recorded (||theta_l||, ||2 OP_l w_l||) per layer at unit mean output norm",
                    kind="gradient", context=context,
                    hint="the split was not taken at the network rescaled to E||f|| = 1 (unrescaled, or another norm)")
