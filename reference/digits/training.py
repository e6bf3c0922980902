"""Minibatch SimCLR training on real digits, tracked against the covariance-operator picture (docs/THEORY.md §6-7).

A batch is the usual two-view batch: B training images, two fresh augmentations each. For anchor view a of
image i the positive is i's other view and the negatives are the 2B - 2 views of the other images. The losses
act on the raw outputs, r = 1/2 ||f_L(x1) - f_L(x2)||^2 (the theorems' object; images are scaled so that r
is O(1) at initialisation, ``data.load_digits``):

- ``simp``: L_simp = r_+ - mean_k r_k-;
- ``triplet``: soft Triplet, margin 0, averaged over the 2B - 2 (anchor, negative) triplets;
- ``infonce``: L_nce with H = 2B - 2 negatives;
- ``maincov``: main term only. The InfoNCE pair weights are detached, summed per (image i, image j) over
  the views, averaged over i's two anchors and symmetrised into W; the loss is
  (1/B) sum_ij W_ij (r_+(i) - rbar_ij), rbar_ij the mean distance over the four view pairs. With W fixed,
  its expected negative gradient over augmentations is exactly 2 OP_W w (the within-sample covariance terms
  cancel because W is symmetric): the official code's ``exact_cov`` idea, here in its batch form. The weights
  come from the augmented views (the authors' default), so they move with the augmentation;
- ``maincov_clean``: the same, with W from the un-augmented images (anchor i against image j, positive
  distance 0): W does not depend on the augmentation, so the expected negative gradient is exactly 2 OP_W w.

``normalise=True`` trains on L2-normalised outputs, z / ||z||, so that r = 1/2 ||z - z'||^2 = 1 - cos (the
authors' setting); the default trains on raw outputs. Theorem 4 is stated for r on the raw output, so a normalised run
records the split at the network whose last layer is rescaled so that the mean output norm over the exact evaluation
views is 1 (``unit_output_network``): the same directions, and r on its outputs is about 1 - cos, the scale the
normalised loss sees (with the run's tau); its E[r_+]/E[r_-] is that of the normalised outputs.

Every ``record_every`` steps, on fixed evaluation sets from held-out test images (``Tracker``): the exact
Theorem 4 split per layer on a small enumerated distribution, the spread E[r_+]/E[r_-], and unit variances.
kNN and the few-shot probe run at every layer at step 0 and at the end.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from dualnet_ssl.digits.data import augment, draw_augmentations, load_digits, split_indices
from dualnet_ssl.digits.exact import empirical_distribution
from dualnet_ssl.digits.metrics import few_shot_probe, knn_accuracy, layer_features, layer_names_of, unit_variances
from dualnet_ssl.distributions import DiscreteAugmentedData, view_outputs
from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import infonce, infonce_loss, infonce_weights, simple, simple_loss, triplet, triplet_loss
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.operators import residue
from dualnet_ssl.runtime import one_intra_op_thread
from dualnet_ssl.seeding import derive_seed, make_generator
from dualnet_ssl.training import expected_pair_distances

LOSSES = ("simp", "triplet", "infonce", "maincov", "maincov_clean")


@dataclass(frozen=True)
class TrainSpec:
    """One run. Defaults: the prototype of issue 11 (64-256-256-64, tau 0.2, Adam 1e-3, batch 256, 1000 steps)."""

    loss: str = "infonce"
    seed: int = 0
    widths: tuple = (64, 256, 256, 64)
    tau: float = 0.2
    lr: float = 1e-3
    batch: int = 256
    steps: int = 1000
    strength: float = 1.0
    record_every: int = 250
    n_test: int = 500
    shots: int = 5
    probe_draws: int = 5
    exact_samples: int = 10     # enumerated evaluation distribution for the Theorem 4 split
    exact_augmentations: int = 3
    exact_negatives: int = 2
    spread_samples: int = 200   # evaluation views for r_+/r_- and unit variances
    spread_augmentations: int = 8
    normalise: bool = False     # True: losses on z / ||z|| (r = 1 - cos), the authors' setting

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise BadInput(f"unknown loss {self.loss!r}; choose one of {LOSSES}")
        if self.steps < 1 or self.record_every < 1 or self.steps % self.record_every:
            raise BadInput(f"steps ({self.steps}) must be a positive multiple of record_every ({self.record_every})")


def pair_distances(z: torch.Tensor) -> torch.Tensor:
    """r = 1/2 ||z_a - z_b||^2 for every pair of rows, (n, n), in Gram form."""
    sq = (z * z).sum(1)
    return (0.5 * (sq[:, None] + sq[None, :]) - z @ z.T).clamp_min(0.0)


def clean_pair_weights(clean: torch.Tensor, tau: float) -> torch.Tensor:
    """W for ``maincov_clean`` from un-augmented outputs (B, d): InfoNCE's negative weights of anchor i (positive
    distance 0) on image j, symmetrised, (B, B) with a zero diagonal. Detached."""
    b = clean.shape[0]
    r = pair_distances(clean.detach())
    other = ~torch.eye(b, dtype=torch.bool, device=clean.device)
    _, beta_neg = infonce_weights(torch.zeros(b, dtype=clean.dtype, device=clean.device),
                                  r[other].reshape(b, b - 1), tau=tau)
    mass = torch.zeros(b, b, dtype=clean.dtype, device=clean.device)
    mass[other] = beta_neg.flatten()
    return 0.5 * (mass + mass.T)


def two_view_loss(z1: torch.Tensor, z2: torch.Tensor, kind: str, tau: float,
                  clean: torch.Tensor | None = None) -> torch.Tensor:
    """The batch loss of a two-view batch (z1[i], z2[i] are views of image i); see the module docstring.
    ``clean`` (B, d): the un-augmented images' outputs, needed by ``maincov_clean`` only."""
    if z1.shape != z2.shape or z1.dim() != 2 or z1.shape[0] < 2:
        raise BadInput(f"need two (B, d) output batches with B >= 2, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b = z1.shape[0]
    z = torch.cat([z1, z2])
    r = pair_distances(z)                                                         # (2B, 2B)
    image = torch.arange(2 * b, device=z.device) % b
    other = image[:, None] != image[None, :]                                      # negatives: other images
    r_pos = r[torch.arange(2 * b), (torch.arange(2 * b) + b) % (2 * b)]
    r_neg = r[other].reshape(2 * b, 2 * b - 2)
    if kind == "simp":
        return simple_loss(r_pos, r_neg).mean()
    if kind == "triplet":
        return triplet_loss(r_pos[:, None].expand_as(r_neg), r_neg[..., None], tau=tau, margin=0.0).mean()
    if kind == "infonce":
        return infonce_loss(r_pos, r_neg, tau=tau).mean()
    if kind == "maincov_clean":
        if clean is None or clean.shape != z1.shape:
            raise BadInput(f"maincov_clean needs the un-augmented outputs, shape {tuple(z1.shape)}")
        r_cross = r.reshape(2, b, 2, b).mean((0, 2))
        return (clean_pair_weights(clean, tau) * (r_pos[:b, None] - r_cross)).sum() / b
    if kind == "maincov":
        _, beta_neg = infonce_weights(r_pos.detach(), r_neg.detach(), tau=tau)   # (2B, 2B-2)
        beta = torch.zeros(2 * b, 2 * b, dtype=z.dtype, device=z.device)
        beta[other] = beta_neg.flatten()
        mass = beta.reshape(2, b, 2, b).sum(2).mean(0)                            # (B anchors i, B images j)
        weights = 0.5 * (mass + mass.T)
        r_cross = r.reshape(2, b, 2, b).mean((0, 2))                              # mean over the 4 view pairs
        return (weights * (r_pos[:b, None] - r_cross)).sum() / b
    raise BadInput(f"unknown loss {kind!r}; choose one of {LOSSES}")


def exact_loss(spec: TrainSpec):
    """The loss whose Theorem 4 split is tracked, and its H: L_simp, L_tri(tau, 0), or L_nce(tau) for
    ``infonce`` and ``maincov`` (whose pair weights are L_nce's)."""
    if spec.loss == "simp":
        return simple(), 1
    if spec.loss == "triplet":
        return triplet(spec.tau, margin=0.0), 1
    return infonce(spec.tau), spec.exact_negatives


@dataclass
class RunResult:
    spec: TrainSpec
    weight_layers: list[str]
    feature_layers: list[str]
    steps: list[int] = field(default_factory=list)
    theta_norm: list[list[float]] = field(default_factory=list)   # per record, per weight layer
    main_norm: list[list[float]] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)             # E[r_+] / E[r_-]
    unit_ratio: list[list[float]] = field(default_factory=list)   # per record, per hidden layer (median)
    across_share: list[list[float]] = field(default_factory=list)
    knn: dict = field(default_factory=dict)                       # {"init"|"final": [per feature layer]}
    probe: dict = field(default_factory=dict)
    output_norm: list[float] = field(default_factory=list)        # normalised runs: E||f|| over the exact views
    final_loss: float = float("nan")

    def ratio(self, layer: int) -> list[float]:
        """||theta_l|| / ||2 OP_l w_l|| per record for weight layer index ``layer``."""
        return [t[layer] / m[layer] for t, m in zip(self.theta_norm, self.main_norm)]


def mean_output_norm(net: BiasFreeMLP, data: DiscreteAugmentedData) -> float:
    """E||f_L|| over the views of ``data``, weighted by their probabilities."""
    with torch.no_grad():
        norms = view_outputs(net, data).norm(dim=-1)                                # (N, M)
        return float((data.sample_probs[:, None] * data.aug_probs * norms).sum())


def unit_output_network(net: BiasFreeMLP, data: DiscreteAugmentedData) -> tuple[BiasFreeMLP, float]:
    """A float64 copy of ``net`` with its last layer multiplied by c = 1 / E||f_L|| over ``data``'s views, and the
    norm E||f_L|| of ``net``. A bias-free ReLU MLP is positively homogeneous, so the copy's output is c f_L: the same
    directions, with mean norm 1, where r = 1/2 ||f - f'||^2 is about 1 - cos."""
    copy_ = copy.deepcopy(net).double()
    norm = mean_output_norm(copy_, data)
    if not norm > 0:
        raise BadInput(f"cannot rescale to unit output: mean output norm is {norm}")
    with torch.no_grad():
        copy_.weights[-1].mul_(1.0 / norm)
    return copy_, norm


class Tracker:
    """The fixed evaluation sets of one run (from held-out test images) and the measurements taken on them."""

    def __init__(self, spec: TrainSpec, train_idx: torch.Tensor, test_idx: torch.Tensor):
        digits = load_digits()
        self.spec = spec
        self.exact = empirical_distribution(spec.exact_samples, spec.exact_augmentations, spec.strength,
                                            seed=derive_seed(spec.seed, "exact-eval"), indices=test_idx)
        self.views = empirical_distribution(spec.spread_samples, spec.spread_augmentations, spec.strength,
                                            seed=derive_seed(spec.seed, "spread-eval"), indices=test_idx)
        self.clean = [(digits.images[i].flatten(1), digits.labels[i]) for i in (train_idx, test_idx)]
        self.loss, self.n_negatives = exact_loss(spec)

    def record(self, net: BiasFreeMLP, step: int, result: RunResult) -> None:
        """The Theorem 4 split per layer, E[r_+]/E[r_-] and unit variances. Raw runs: at ``net`` itself. Normalised
        runs: the split at ``unit_output_network`` (last layer rescaled to mean output norm 1 on the exact views) and
        the spread of the normalised outputs; hidden units are unchanged by the rescale."""
        if self.spec.normalise:
            exact_net, norm = unit_output_network(net, self.exact)
            result.output_norm.append(norm)
        else:
            exact_net = copy.deepcopy(net).double()
        splits = [residue(exact_net, name, self.exact, self.loss, self.n_negatives) for name in result.weight_layers]
        with torch.no_grad():
            outputs = view_outputs(exact_net, self.views)
            if self.spec.normalise:
                norms = outputs.norm(dim=-1, keepdim=True)
                if not bool((norms > 0).all()):
                    raise BadInput(f"an evaluation view's output is exactly 0 (every output unit off) at step {step} "
                                   f"(seed {self.spec.seed}), so its normalised output is undefined")
                outputs = outputs / norms
            r_pos, r_neg = expected_pair_distances(self.views, outputs)
        units = unit_variances(exact_net, self.views)
        result.steps.append(step)
        result.theta_norm.append([float(s.theta.norm()) for s in splits])
        result.main_norm.append([float(s.main.norm()) for s in splits])
        result.spread.append(float(r_pos / r_neg))
        result.unit_ratio.append([u["median_ratio"] for u in units])
        result.across_share.append([u["across_share"] for u in units])

    def evaluate(self, net: BiasFreeMLP, when: str, result: RunResult) -> None:
        (train_x, train_y), (test_x, test_y) = self.clean
        dtype = next(net.parameters()).dtype
        train_f, test_f = layer_features(net, train_x.to(dtype)), layer_features(net, test_x.to(dtype))
        result.knn[when] = [knn_accuracy(a, train_y, b, test_y) for a, b in zip(train_f, test_f)]
        result.probe[when] = [few_shot_probe(a, train_y, b, test_y, shots=self.spec.shots,
                                             draws=self.spec.probe_draws, seed=derive_seed(self.spec.seed, "probe"))
                              for a, b in zip(train_f, test_f)]


def train_run(spec: TrainSpec, progress=None) -> RunResult:
    """Train a float32 ``BiasFreeMLP`` with Adam on two-view batches; ``progress(n)`` is told of each step."""
    digits = load_digits()
    train_idx, test_idx = split_indices(len(digits.labels), spec.n_test, seed=derive_seed(spec.seed, "split"))
    if spec.batch > len(train_idx):
        raise BadInput(f"batch {spec.batch} exceeds the {len(train_idx)} training images")
    net = BiasFreeMLP(spec.widths, seed=derive_seed(spec.seed, "net"), dtype=torch.float32)
    result = RunResult(spec, net.layer_names(), layer_names_of(net))
    tracker = Tracker(spec, train_idx, test_idx)
    optimiser = torch.optim.Adam(net.parameters(), lr=spec.lr)
    batches, views = make_generator(derive_seed(spec.seed, "batches")), make_generator(derive_seed(spec.seed, "views"))
    images = digits.images.float()
    output = (lambda z: z / z.norm(dim=1, keepdim=True)) if spec.normalise else (lambda z: z)
    with one_intra_op_thread():
        tracker.evaluate(net, "init", result)
        for step in range(spec.steps + 1):
            if step % spec.record_every == 0:
                tracker.record(net, step, result)
            if step == spec.steps:
                break
            picked = images[train_idx[torch.randperm(len(train_idx), generator=batches)[:spec.batch]]]
            z1, z2 = (output(net(augment(picked, draw_augmentations(spec.batch, views), spec.strength,
                                         digits.max_intensity).flatten(1))) for _ in range(2))
            clean = output(net(picked.flatten(1))).detach() if spec.loss == "maincov_clean" else None
            loss = two_view_loss(z1, z2, spec.loss, spec.tau, clean)
            if not torch.isfinite(loss):
                raise BadInput(f"training diverged: non-finite {spec.loss} loss at step {step} (seed {spec.seed})")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            result.final_loss = float(loss.detach())
            if progress is not None:
                progress(1)
        tracker.evaluate(net, "final", result)
    return result
