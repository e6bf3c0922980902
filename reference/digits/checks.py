"""Checkers for the digits study's measured claims (docs/DIGITS.md): per-run figures, held to the thresholds
of the "digits study" section of ``dualnet_ssl.thresholds`` on seeds that did not set them."""
from __future__ import annotations

import math

from dualnet_ssl.digits.training import RunResult
from dualnet_ssl.compare import fail
from dualnet_ssl.errors import BadInput
from dualnet_ssl.thresholds import Threshold


def run_figures(run: RunResult) -> dict[str, float]:
    """The figures a claim can be stated on, for one run (init = first record, final = last). Normalised-output runs
    keep no records (the Theorem 4 split is tracked on raw outputs), so they give the probe and kNN figures only."""
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
