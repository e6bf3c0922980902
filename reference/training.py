"""Full-batch gradient descent on the exact expected loss, tracking the Theorem 4 residue (docs/THEORY.md §7).

At each recorded step, for every layer l: ||theta_l||, ||2 OP_l w_l|| (OP_l weighted by the loss's
pair mass), ||dE[L]/dw_l||, and the augmentation spread E[r_+] / E[r_-] of the outputs.
Because -dE[L]/dw_l = 2 OP_l w_l + theta_l, the triangle inequality gives
``|ratio - 1| <= ||dE/dw_l|| / ||2 OP_l w_l||``: where the gradient is small next to the main term
(near a stationary point), the ratio ||theta_l|| / ||2 OP_l w_l|| must be close to 1. The §7 runs measured
here do not reach that regime; see theorems/test_residue_training.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dualnet_ssl.distributions import (DiscreteAugmentedData, enumerate_loss, gaussian_augmented, view_outputs,
                                       view_pair_distances)
from dualnet_ssl.compare import Context, fail, passed
from dualnet_ssl.errors import BadInput
from dualnet_ssl.networks import BiasFreeMLP, layer_names
from dualnet_ssl.operators import residue
from dualnet_ssl.seeding import derive_seed
from dualnet_ssl.results import CheckResult
from dualnet_ssl.thresholds import (EXACT_FINITE, EXACT_MIN_RECORDS, RESIDUE_MIN_FINAL_RATIO, RESIDUE_MIN_SPREAD_DROP,
                                    RESIDUE_MIN_THETA_DROP, Threshold, as_threshold)

PROTOTYPE_WIDTHS = (8, 16, 16, 6)
"""docs/THEORY.md §7 training setup: an 8-16-16-6 MLP, 6 samples, 4 augmentations, sigma 0.3."""
PROTOTYPE_SAMPLES, PROTOTYPE_AUGMENTATIONS, PROTOTYPE_SIGMA = 6, 4, 0.3
PROTOTYPE_LR, PROTOTYPE_STEPS = 0.3, 300
"""Learning rate and length of the §7 runs. Measured: over 300 steps at seeds 0-2 the exact E[L] fell at every
step for lr 0.3 and 1.0 (L_tri and L_nce, tau 0.5 and 2), except one rise of 2.5e-6 (L_nce H=2, tau 2, seed 1, lr 0.3)
at a ReLU kink; lr 3 diverged (non-finite L_nce at tau 2). 0.3 is 10x below divergence."""

def prototype_case(seed: int, *, widths=PROTOTYPE_WIDTHS, n_samples: int = PROTOTYPE_SAMPLES,
                   n_augmentations: int = PROTOTYPE_AUGMENTATIONS, sigma: float = PROTOTYPE_SIGMA,
                   dtype=torch.float64, device="cpu") -> tuple[BiasFreeMLP, DiscreteAugmentedData]:
    """(net, data) of the §7 training setup; data and weights from ``derive_seed(seed, "data" / "net")``."""
    data = gaussian_augmented(n_samples, n_augmentations, widths[0], sigma, seed=derive_seed(seed, "data"),
                              dtype=dtype, device=device)
    net = BiasFreeMLP(widths, seed=derive_seed(seed, "net"), dtype=dtype, device=device)
    return net, data


def expected_pair_distances(data: DiscreteAugmentedData, outputs: torch.Tensor,
                            exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[r_+], E[r_-]) under the distribution of docs/THEORY.md §6; ``outputs`` has shape (N, M, n_L).

    Positive: two views drawn iid from one sample (x1 = x2 can happen). Negative: the anchor view and a
    view of an independently drawn sample (not the anchor's when ``exclude_self``).
    """
    n, m = data.aug_probs.shape
    if outputs.dim() != 3 or outputs.shape[:2] != (n, m):
        raise BadInput(f"outputs must have shape ({n}, {m}, n_L), got {tuple(outputs.shape)}")
    r_within, r = view_pair_distances(outputs)                                     # (N, M, M), (N, M, V)
    anchor = data.sample_probs[:, None] * data.aug_probs                           # (N, M)
    r_pos = torch.einsum("im,imk,ik->", anchor, r_within, data.aug_probs)
    r_neg = torch.einsum("im,imv,iv->", anchor, r, data.negative_view_probs(exclude_self))
    return r_pos, r_neg


def expected_loss(net: nn.Module, data: DiscreteAugmentedData, loss, n_negatives: int = 1,
                  exclude_self: bool = False) -> torch.Tensor:
    """E[L] by exact enumeration through the network outputs, differentiable in every parameter."""
    return enumerate_loss(data, view_outputs(net, data), loss, n_negatives, exclude_self, with_pair_mass=False).expected


def gradient_step(net: nn.Module, data: DiscreteAugmentedData, loss, lr: float, n_negatives: int = 1,
                  exclude_self: bool = False) -> float:
    """One full-batch step w <- w - lr dE[L]/dw on every parameter; returns E[L] before the step."""
    params = [p for p in net.parameters() if p.requires_grad]
    value = expected_loss(net, data, loss, n_negatives, exclude_self)
    grads = torch.autograd.grad(value, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(lr * g)
    return float(value.detach())


@dataclass
class Trajectory:
    """Per recorded step (rows) and layer (columns) measurements of one training run."""

    description: str
    layers: list[str]
    steps: list[int] = field(default_factory=list)
    expected_loss: list[float] = field(default_factory=list)
    r_pos: list[float] = field(default_factory=list)            # E[r_+]
    r_neg: list[float] = field(default_factory=list)            # E[r_-]
    theta_norm: list[list[float]] = field(default_factory=list)  # ||theta_l||
    main_norm: list[list[float]] = field(default_factory=list)   # ||2 OP_l w_l||
    grad_norm: list[list[float]] = field(default_factory=list)   # ||dE[L]/dw_l||

    def column(self, name: str, layer: str) -> np.ndarray:
        """One layer's series of ``theta_norm``, ``main_norm`` or ``grad_norm``."""
        return np.asarray(getattr(self, name))[:, self.layers.index(layer)]

    def ratio(self, layer: str) -> np.ndarray:
        """||theta_l|| / ||2 OP_l w_l|| at each recorded step."""
        return self.column("theta_norm", layer) / self.column("main_norm", layer)

    def spread(self) -> np.ndarray:
        """E[r_+] / E[r_-] at each recorded step."""
        return np.asarray(self.r_pos) / np.asarray(self.r_neg)


def train(net: nn.Module, data: DiscreteAugmentedData, loss, *, lr: float, steps: int, record_every: int,
          n_negatives: int = 1, exclude_self: bool = False) -> Trajectory:
    """Full-batch gradient descent on the exact E[L], all layers; records steps 0, record_every, ..., steps."""
    if steps < 1 or record_every < 1 or steps % record_every:
        raise BadInput(f"steps ({steps}) must be a positive multiple of record_every ({record_every})")
    names = layer_names(net)
    traj = Trajectory(f"{loss}, H={n_negatives}, lr={lr:g}, {steps} steps", names)
    for step in range(steps + 1):
        if step % record_every == 0:
            _record(traj, step, net, data, loss, n_negatives, exclude_self)
        if step < steps:
            gradient_step(net, data, loss, lr, n_negatives, exclude_self)
    return traj


def _record(traj: Trajectory, step: int, net, data, loss, n_negatives: int, exclude_self: bool) -> None:
    splits = [residue(net, name, data, loss, n_negatives, exclude_self) for name in traj.layers]
    with torch.no_grad():
        r_pos, r_neg = expected_pair_distances(data, view_outputs(net, data), exclude_self)
    traj.steps.append(step)
    traj.expected_loss.append(splits[0].expected_loss)
    traj.r_pos.append(float(r_pos))
    traj.r_neg.append(float(r_neg))
    traj.theta_norm.append([float(s.theta.norm()) for s in splits])
    traj.main_norm.append([float(s.main.norm()) for s in splits])
    traj.grad_norm.append([float(s.neg_gradient.norm()) for s in splits])


def format_table(rows: list[tuple[str, Trajectory]], layer: str) -> str:
    """One line per labelled run: start -> end of ||theta||, its drop, ratio, r_+/r_-, ||grad||/||2 OP w||, E[L]."""
    lines = [f"{'run':<34} {'|theta| start->end':>21} {'drop':>7} {'ratio start->end':>17} "
             f"{'r+/r- start->end':>18} {'|g|/|2OPw| end':>14} {'E[L] start->end':>17}"]
    for label, t in rows:
        th, ra, sp = t.column("theta_norm", layer), t.ratio(layer), t.spread()
        g = t.column("grad_norm", layer) / t.column("main_norm", layer)
        lines.append(f"{label:<34} {th[0]:9.2e}->{th[-1]:9.2e} {th[0] / th[-1]:7.1f} {ra[0]:7.3f}->{ra[-1]:7.3f} "
                     f"{sp[0]:8.4f}->{sp[-1]:7.4f} {g[-1]:14.3e} {t.expected_loss[0]:7.3f}->{t.expected_loss[-1]:7.3f}")
    return "\n".join(lines)


def check_residue_shrinks(traj: Trajectory, context: str = "", *, layers: list[str] | None = None,
                          min_theta_drop: Threshold | float = RESIDUE_MIN_THETA_DROP,
                          min_spread_drop: Threshold | float = RESIDUE_MIN_SPREAD_DROP,
                          min_final_ratio: Threshold | float = RESIDUE_MIN_FINAL_RATIO) -> CheckResult:
    """Theorem 4 during training: fail unless the run shows what docs/THEORY.md §7 measured; return a CheckResult
    whose ``details`` hold the measured drops and final ratios.

    Per layer: ||theta_l|| falls by ``min_theta_drop``; the final ||theta_l|| / ||2 OP_l w_l|| is at least
    ``min_final_ratio``. For the outputs: E[r_+]/E[r_-] falls by ``min_spread_drop``. Drops compare the first
    and last recorded steps. ``context`` (seed, architecture, reproduce line) ends every message. The default
    thresholds, with the measurements and seeds that set them, are in ``dualnet_ssl.thresholds``.
    """
    __tracebackhide__ = True
    min_theta_drop, min_spread_drop, min_final_ratio = (as_threshold(t) for t in
                                                        (min_theta_drop, min_spread_drop, min_final_ratio))
    where = f"Theorem 4 residue during training ({traj.description})"
    line = Context.of(context)
    tail = f" [{line}]" if line else ""
    if len(traj.steps) < 2:
        message = f"need at least 2 recorded steps, got {len(traj.steps)}"
        fail(where, message, limit=EXACT_MIN_RECORDS, allowed=">= 2 recorded steps", figure=len(traj.steps),
             context=line, text=f"{where}: {message}{tail}")
    names = traj.layers if layers is None else layers
    series = {"E[L]": np.asarray(traj.expected_loss), "E[r_+]": np.asarray(traj.r_pos),
              "E[r_-]": np.asarray(traj.r_neg)}
    for name in names:
        for quantity in ("theta_norm", "main_norm", "grad_norm"):
            series[f"{quantity} of {name}"] = traj.column(quantity, name)
    for quantity, values in series.items():
        if not np.isfinite(values).all():
            bad = traj.steps[int(np.argmin(np.isfinite(values)))]
            message = f"{quantity} is not finite from step {bad}"
            fail(where, message, limit=EXACT_FINITE, allowed="finite", figure=float("nan"), context=line,
                 where=f"{quantity}, step {bad}", text=f"{where}: {message}{tail}")
    steps = f"steps {traj.steps[0]}->{traj.steps[-1]}"
    measured = {}
    spread = traj.spread()
    measured["spread_drop"] = spread[0] / spread[-1]
    if not measured["spread_drop"] >= min_spread_drop.value:
        message = (f"augmentation spread E[r_+]/E[r_-] fell only {measured['spread_drop']:.3g}x "
                   f"({spread[0]:.3e} -> {spread[-1]:.3e}, {steps}); required >= {min_spread_drop.value:g}x")
        fail(where, message, limit=min_spread_drop, allowed=f">= {min_spread_drop.value:g}x",
             figure=measured["spread_drop"], context=line, where="outputs", details=measured,
             text=f"{where}: {message}{tail}")
    for name in names:
        theta, ratio = traj.column("theta_norm", name), traj.ratio(name)
        drop = measured[f"theta_drop {name}"] = theta[0] / theta[-1]
        measured[f"final_ratio {name}"] = ratio[-1]
        if not drop >= min_theta_drop.value:
            message = (f"||theta|| of layer {name} fell only {drop:.3g}x ({theta[0]:.3e} -> {theta[-1]:.3e}, "
                       f"{steps}); required >= {min_theta_drop.value:g}x")
            fail(where, message, limit=min_theta_drop, allowed=f">= {min_theta_drop.value:g}x", figure=drop,
                 context=line, where=f"layer {name}", details=measured, text=f"{where}: {message}{tail}")
        if not ratio[-1] >= min_final_ratio.value:
            message = (f"final ||theta|| / ||2 OP w|| of layer {name} is {ratio[-1]:.3g} (step 0: {ratio[0]:.3g}); "
                       f"required >= {min_final_ratio.value:g}")
            fail(where, message, limit=min_final_ratio, allowed=f">= {min_final_ratio.value:g}", figure=ratio[-1],
                 context=line, where=f"layer {name}", details=measured, text=f"{where}: {message}{tail}")
    return passed(where, limit=min_theta_drop, allowed=f">= {min_theta_drop.value:g}x",
                  figure=min(measured[f"theta_drop {name}"] for name in names), context=line, details=measured,
                  message="smallest ||theta|| drop over the layers")
