"""BYOL / SimSiam training on toy data: does it learn or collapse, and how big is the implicit term
(docs/THEORY.md §9, "Dynamics, measured")?

Data: Gaussian clusters whose class sits in a few coordinates, with large nuisance coordinates that the
augmentation redraws, so that a random network's output is dominated by nuisance and learning shows as a rising
probe. Training: minibatch SGD on the symmetric normalised loss ``2 - 2 cos`` of ``byol.DualBranch``, the target an
EMA copy of the online net (BYOL) or the online net itself under stop-gradient (SimSiam). Measured on held-out
points, on the unit-normalised output of the online net ``f``:

- ``probe``: test accuracy of a ridge-regression probe (one-hot targets, ridge ``PROBE_RIDGE`` per sample, no
  standardisation). Its argmax is blind to the scale of noise-free features, so a collapsing output keeps part of
  its probe accuracy as long as its tiny variation still carries the class; the collapse measure is ``spread``;
- ``rank``: effective rank ``exp(entropy of the normalised eigenvalues)`` of the outputs' covariance;
- ``spread``: ``sqrt(n) * mean_j std_j`` of the unit outputs (about 1 when spread isotropically, 0 when collapsed);
- ``share``: ``||(b)|| / (||(a)|| + ||(b)||)`` at the first layer on the training batch (``byol.autograd_terms``),
  averaged over the logged steps.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch

from dualnet_ssl.byol import DualBranch, autograd_terms
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.seeding import derive_seed, make_generator

PROBE_RIDGE = 1e-2
"""Ridge per training sample of the probe, on unit-norm features (no standardisation); it keeps the solve well
conditioned when the outputs collapse. It does not make the probe sensitive to the outputs' scale (argmax)."""

VARIANTS = {
    "BYOL (centring, predictor)": dict(normalisation="centre", predictor=True, shared=False),
    "BYOL, no centring": dict(normalisation="none", predictor=True, shared=False),
    "BYOL, no predictor": dict(normalisation="centre", predictor=False, shared=False),
    "BYOL, no centring, no predictor": dict(normalisation="none", predictor=False, shared=False),
    "SimSiam (centring, predictor)": dict(normalisation="centre", predictor=True, shared=True),
}
"""The rows of the study's table."""


@dataclass
class ViewData:
    """Training points, labelled held-out points for the probe, and an augmentation ``augment(x, generator)``."""
    train: torch.Tensor
    probe_train: torch.Tensor
    probe_train_labels: torch.Tensor
    probe_test: torch.Tensor
    probe_test_labels: torch.Tensor
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def gaussian_clusters(seed: int, *, n_classes: int = 5, class_dims: int = 4, nuisance_dims: int = 12,
                      n_train: int = 1000, n_probe: int = 500, within: float = 0.4, nuisance: float = 1.5,
                      class_noise: float = 0.2) -> ViewData:
    """Class means ~ N(0, I) in ``class_dims`` coordinates (within-class sd ``within``), nuisance coordinates
    ~ N(0, nuisance^2). The augmentation redraws every nuisance coordinate and adds ``class_noise`` to the rest."""
    g = make_generator(derive_seed(seed, "clusters"))
    means = torch.randn(n_classes, class_dims, generator=g, dtype=torch.float64)

    def draw(n):
        labels = torch.randint(n_classes, (n,), generator=g)
        signal = means[labels] + within * torch.randn(n, class_dims, generator=g, dtype=torch.float64)
        return torch.cat([signal, nuisance * torch.randn(n, nuisance_dims, generator=g, dtype=torch.float64)], 1), labels

    def augment(x, generator):
        noise = class_noise * torch.randn(x.shape[0], class_dims, generator=generator, dtype=x.dtype)
        fresh = nuisance * torch.randn(x.shape[0], nuisance_dims, generator=generator, dtype=x.dtype)
        return torch.cat([x[:, :class_dims] + noise, fresh], 1)

    train, _ = draw(n_train)
    (probe_train, probe_train_labels), (probe_test, probe_test_labels) = draw(n_probe), draw(n_probe)
    return ViewData(train, probe_train, probe_train_labels, probe_test, probe_test_labels, augment)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def ridge_probe(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                ridge: float = PROBE_RIDGE) -> float:
    """Test accuracy of ridge regression onto one-hot labels, with an unpenalised intercept column."""
    if train.shape[0] != train_labels.shape[0] or test.shape[0] != test_labels.shape[0]:
        raise BadInput("features and labels differ in length")
    design = torch.cat([train, torch.ones_like(train[:, :1])], 1)
    penalty = ridge * train.shape[0] * torch.eye(design.shape[1], dtype=design.dtype)
    penalty[-1, -1] = 0.0
    onehot = torch.nn.functional.one_hot(train_labels, int(train_labels.max()) + 1).to(design.dtype)
    coef = torch.linalg.solve(design.T @ design + penalty, design.T @ onehot)
    predicted = (torch.cat([test, torch.ones_like(test[:, :1])], 1) @ coef).argmax(1)
    return float((predicted == test_labels).double().mean())


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the covariance's eigenvalues normalised to sum 1; 0 for a constant feature matrix."""
    centred = features - features.mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred / features.shape[0]).clamp_min(0)
    if float(eig.sum()) == 0:
        return 0.0
    p = eig / eig.sum()
    return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))


def spread(features: torch.Tensor) -> float:
    """sqrt(n) * mean_j std_j of the unit-normalised features."""
    unit = _unit(features)
    return float(unit.std(0, unbiased=False).mean() * unit.shape[1] ** 0.5)


@dataclass
class Measurement:
    probe: float
    rank: float
    spread: float


def measure(net: BiasFreeMLP, data: ViewData) -> Measurement:
    with torch.no_grad():
        train, test = _unit(net(data.probe_train)), _unit(net(data.probe_test))
    return Measurement(ridge_probe(train, data.probe_train_labels, test, data.probe_test_labels),
                       effective_rank(test), spread(test))


@dataclass
class StudyRun:
    variant: str
    seed: int
    start: Measurement
    end: Measurement
    shares: list[float] = field(default_factory=list)

    @property
    def share(self) -> float:
        return sum(self.shares) / len(self.shares) if self.shares else 0.0


def train_variant(data: ViewData, variant: str, seed: int, *, steps: int = 600, batch: int = 64, lr: float = 0.05,
                  momentum: float = 0.9, ema: float = 0.99, hidden: int = 64, width: int = 16,
                  log_every: int = 50) -> StudyRun:
    """Train one variant of ``VARIANTS`` from ``seed`` (weights and batches from derived seeds) and measure it."""
    if variant not in VARIANTS:
        raise BadInput(f"unknown variant {variant!r}; variants: {list(VARIANTS)}")
    spec = VARIANTS[variant]
    dim = data.train.shape[1]
    online = BiasFreeMLP([dim, hidden, width], seed=derive_seed(seed, "online"))
    predictor = BiasFreeMLP([width, hidden, width], seed=derive_seed(seed, "predictor")) if spec["predictor"] else None
    target = None if spec["shared"] else copy.deepcopy(online)
    if target is not None:
        target.requires_grad_(False)
    model = DualBranch(online, predictor, target, normalisation=spec["normalisation"], loss="normalised",
                       symmetric=True)
    params = list(online.parameters()) + ([] if predictor is None else list(predictor.parameters()))
    optimiser = torch.optim.SGD(params, lr=lr, momentum=momentum)
    g = make_generator(derive_seed(seed, "batches"))
    run = StudyRun(variant, seed, measure(online, data), measure(online, data))
    for step in range(steps):
        x = data.train[torch.randint(data.train.shape[0], (batch,), generator=g)]
        x1, x2 = data.augment(x, g), data.augment(x, g)
        if step % log_every == 0:
            _, terms = autograd_terms(model, x1, x2, online.layer_names()[0])
            run.shares.append(terms.implicit_share())
        optimiser.zero_grad()
        model(x1, x2).backward()
        optimiser.step()
        if target is not None:
            with torch.no_grad():
                for w_t, w in zip(target.parameters(), online.parameters()):
                    w_t.mul_(ema).add_((1 - ema) * w)
    run.end = measure(online, data)
    return run


def check_learns(run: StudyRun, *, min_probe_gain: float, min_final_spread: float) -> None:
    """The run learned: its probe rose by at least ``min_probe_gain`` and its output did not collapse (final spread
    at least ``min_final_spread``)."""
    gain = run.end.probe - run.start.probe
    if gain < min_probe_gain or run.end.spread < min_final_spread:
        raise IdentityViolation(f"{run.variant}, seed {run.seed} did not learn: probe {run.start.probe:.3f} -> "
                                f"{run.end.probe:.3f} (gain {gain:+.3f}, needs >= {min_probe_gain}), final spread "
                                f"{run.end.spread:.3f} (needs >= {min_final_spread})")


def check_collapses(run: StudyRun, *, max_final_spread: float) -> None:
    """The run's output collapsed in direction: final spread at most ``max_final_spread``."""
    if run.end.spread > max_final_spread:
        raise IdentityViolation(f"{run.variant}, seed {run.seed} did not collapse: final spread {run.end.spread:.3f} "
                                f"(from {run.start.spread:.3f}; collapse needs <= {max_final_spread})")


def check_probe_falls(run: StudyRun, *, min_drop: float) -> None:
    """The run's probe fell by at least ``min_drop`` below the initial network's."""
    drop = run.start.probe - run.end.probe
    if drop < min_drop:
        raise IdentityViolation(f"{run.variant}, seed {run.seed}: probe {run.start.probe:.3f} -> {run.end.probe:.3f} "
                                f"fell by {drop:+.3f}, less than {min_drop}")


def check_probe_gap(learners: list[StudyRun], collapsed: list[StudyRun], *, min_mean_gap: float) -> float:
    """Paired by seed, the learners' final probe exceeds the collapsed runs' by at least ``min_mean_gap`` on
    average; returns the mean gap."""
    pairs = {r.seed: r for r in collapsed}
    if not learners or sorted(r.seed for r in learners) != sorted(pairs):
        raise BadInput("learner and collapsed runs must cover the same seeds, one run per seed each")
    gap = sum(r.end.probe - pairs[r.seed].end.probe for r in learners) / len(learners)
    if gap < min_mean_gap:
        raise IdentityViolation(f"mean final probe gap {gap:+.3f} of {learners[0].variant} over "
                                f"{collapsed[0].variant} (seeds {sorted(pairs)}) is below {min_mean_gap}")
    return gap


def check_implicit_share(run: StudyRun, *, min_share: float) -> None:
    """The implicit term's mean share of the first layer's gradient is at least ``min_share``."""
    if run.share < min_share:
        raise IdentityViolation(f"{run.variant}, seed {run.seed}: implicit term's mean share {run.share:.3f} of the "
                                f"gradient is below {min_share}")


def format_table(runs: list[StudyRun]) -> str:
    """A markdown table: per variant, mean (min-max over seeds) of probe, rank and spread, start -> end, and the
    implicit term's mean share."""
    lines = ["| variant | seeds | probe start -> end | rank start -> end | spread end | implicit share |",
             "|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r.variant for r in runs):
        rows = [r for r in runs if r.variant == variant]

        def stat(values):
            return f"{sum(values) / len(values):.2f} ({min(values):.2f}-{max(values):.2f})"
        lines.append(f"| {variant} | {','.join(str(r.seed) for r in rows)} | {stat([r.start.probe for r in rows])} -> "
                     f"{stat([r.end.probe for r in rows])} | {stat([r.start.rank for r in rows])} -> "
                     f"{stat([r.end.rank for r in rows])} | {stat([r.end.spread for r in rows])} | "
                     f"{stat([r.share for r in rows])} |")
    return "\n".join(lines)
