"""The hierarchical latent tree model (HLTM) of THEORY.md §8: model, sampler, exact enumeration,
latent-recovery metric, selectivity, a small training routine and the checkers built on them.

Conventions:
- A complete c-ary tree of depth L; level l holds c^l nodes, numbered in level order, so the
  children of node j at level l are nodes c*j .. c*j+c-1 at level l+1. Level 0 is the root,
  level L the leaves. Flat node index: all of level 0, then level 1, ... (``node_index``).
- Latents ``z`` are in {0, 1}; the root is uniform; ``P(z_child = z_parent) = (1 + rho)/2``.
  Every latent is then marginally uniform, so ``Var z_mu = 1/4``.
- ``x`` is the vector of leaf bits (0/1), as in the official code.
- The "sample" of Theorems 3-4 is the root value ``z0``; the augmentation ``p(x | z0)``
  resamples everything below it (positive pairs share z0, negatives draw their own).
"""
from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field

import torch
from scipy.stats import norm, spearmanr
from torch.func import functional_call, stack_module_state, vmap

from dualnet_ssl.compare import assert_identity
from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.runtime import one_intra_op_thread
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.losses import infonce_loss, pair_distance
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.seeding import derive_seed, make_generator
from dualnet_ssl.operators import mean_connections, numerical_rank, operator_dense, operator_times, symmetric_eigenvalues
from dualnet_ssl.tolerances import Z_SCORE_FALSE_ALARM, tolerance

MAX_ENUMERATED_LEAVES = 16
"""Exact enumeration of p(x | z0) over all 2^(c^L) leaf configurations: 2^16 = 65536 rows at most."""

MAX_ENUMERATED_NODES = 20
"""Brute-force joint of all latents (the reference twin of belief propagation): 2^20 rows at most."""


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HLTM:
    """Tree shape and edge polarities. ``polarities[l]`` (l = 1..L) holds rho of the edges into level l,
    shape (c^l,); ``polarities[0]`` is empty (the root has no parent)."""

    depth: int
    branching: int
    polarities: tuple

    @property
    def n_leaves(self) -> int:
        return self.branching ** self.depth

    def level_size(self, level: int) -> int:
        return self.branching ** level

    @property
    def n_nodes(self) -> int:
        return sum(self.level_size(l) for l in range(self.depth + 1))

    def node_index(self, level: int, j: int) -> int:
        """Flat index of node j at ``level`` (level order)."""
        return sum(self.level_size(l) for l in range(level)) + j

    def describe(self) -> str:
        return f"HLTM(depth={self.depth}, c={self.branching}, {self.n_leaves} leaves)"

    # --- sampling ---------------------------------------------------------------------------

    def sample_latents(self, n: int, generator: torch.Generator, root: torch.Tensor | None = None) -> list:
        """All latents by level, ``z[l]`` of shape (n, c^l), bool. ``root`` (n,) fixes z0."""
        z = torch.randint(0, 2, (n,), generator=generator).bool() if root is None else root.bool().reshape(n)
        levels = [z[:, None]]
        for l in range(1, self.depth + 1):
            parent = levels[-1].repeat_interleave(self.branching, dim=1)
            keep = torch.rand(n, self.level_size(l), generator=generator, dtype=torch.float64) \
                < (1 + self.polarities[l]) / 2
            levels.append(torch.where(keep, parent, ~parent))
        return levels

    def sample_pairs(self, n: int, generator: torch.Generator, *, share_root: bool = True, dtype=torch.float32):
        """(anchor x, positive x, negative x), each (n, c^L), and their roots (n, 3).

        The positive shares the anchor's root and resamples the tree below it; the negative has an
        independent root. ``share_root=False`` draws the positive's root independently too: the
        pure-noise fault of the tests.
        """
        root = torch.randint(0, 2, (n,), generator=generator).bool()
        pos_root = root if share_root else torch.randint(0, 2, (n,), generator=generator).bool()
        anchor = self.sample_latents(n, generator, root)[-1]
        positive = self.sample_latents(n, generator, pos_root)[-1]
        neg_root = torch.randint(0, 2, (n,), generator=generator).bool()
        negative = self.sample_latents(n, generator, neg_root)[-1]
        return anchor.to(dtype), positive.to(dtype), negative.to(dtype), torch.stack([root, pos_root, neg_root], 1)

    # --- exact facts ---------------------------------------------------------------------------

    def path_correlations(self) -> torch.Tensor:
        """E[(2 z_a - 1)(2 z_b - 1)] = product of rho on the path between a and b, (n_nodes, n_nodes)."""
        c = self.branching
        chains = []   # for every node: {ancestor flat index: product of rho from the ancestor down}
        for l in range(self.depth + 1):
            for j in range(self.level_size(l)):
                chain, prod, level, k = {self.node_index(l, j): 1.0}, 1.0, l, j
                while level > 0:
                    prod *= float(self.polarities[level][k])
                    level, k = level - 1, k // c
                    chain[self.node_index(level, k)] = prod
                chains.append(chain)
        out = torch.empty(self.n_nodes, self.n_nodes, dtype=torch.float64)
        for a, chain_a in enumerate(chains):
            for b, chain_b in enumerate(chains):
                lca = max(set(chain_a) & set(chain_b))   # deepest common ancestor = largest flat index
                out[a, b] = chain_a[lca] * chain_b[lca]
        return out

    def upward_downward(self, x: torch.Tensor):
        """Belief propagation on each row of x (B, c^L): (log p(x | z0) (B, 2), E[z | x] by level).

        Exact for any tree size: the cost is linear in the number of nodes. Messages are rescaled
        per node and the scales kept in log space, so deep trees do not underflow.
        """
        if x.dim() != 2 or x.shape[1] != self.n_leaves:
            raise BadInput(f"x must have shape (batch, {self.n_leaves}), got {tuple(x.shape)}")
        x = x.to(torch.float64)
        batch, c = x.shape[0], self.branching
        lam = torch.stack([1 - x, x], -1)                          # p(leaves below | z), (B, n_l, 2)
        log_scale = torch.zeros(batch, dtype=torch.float64)
        lams, msgs = [None] * (self.depth + 1), [None] * (self.depth + 1)
        lams[self.depth] = lam
        for l in range(self.depth, 0, -1):
            a = ((1 + self.polarities[l]) / 2)[None, :, None]
            msg = a * lams[l] + (1 - a) * lams[l].flip(-1)         # sum_z' T(z'|z) lam(z')
            msgs[l] = msg.reshape(batch, self.level_size(l - 1), c, 2)
            parent = msgs[l].prod(2)
            norm = parent.sum(-1, keepdim=True)
            log_scale += norm.log().sum((1, 2))
            lams[l - 1] = parent / norm
        log_lik = lams[0][:, 0, :].log() + log_scale[:, None]
        pi = torch.full((batch, 1, 2), 0.5, dtype=torch.float64)   # p(z, leaves outside), up to scale
        posts = [None] * (self.depth + 1)
        for l in range(self.depth + 1):
            joint = pi * lams[l]
            posts[l] = joint[..., 1] / joint.sum(-1)
            if l == self.depth:
                break
            m = msgs[l + 1]                                        # (B, n_l, c, 2)
            others = torch.stack([torch.cat([m[:, :, :k], m[:, :, k + 1:]], 2).prod(2) for k in range(c)], 2)
            u = (pi[:, :, None, :] * others).reshape(batch, self.level_size(l + 1), 2)
            a = ((1 + self.polarities[l + 1]) / 2)[None, :, None]
            pi = a * u + (1 - a) * u.flip(-1)
            pi = pi / pi.sum(-1, keepdim=True)
        return log_lik, posts

    def joint_table(self):
        """Brute force: every latent configuration (S, n_nodes) bool and its probability (S,).

        The reference twin of ``upward_downward``; at most 2^MAX_ENUMERATED_NODES rows.
        """
        if self.n_nodes > MAX_ENUMERATED_NODES:
            raise BadInput(f"{self.describe()} has {self.n_nodes} nodes; the brute-force joint allows "
                           f"{MAX_ENUMERATED_NODES}")
        configs = all_bit_vectors(self.n_nodes).bool()
        probs = torch.full((configs.shape[0],), 0.5, dtype=torch.float64)
        for l in range(1, self.depth + 1):
            for j in range(self.level_size(l)):
                same = configs[:, self.node_index(l, j)] == configs[:, self.node_index(l - 1, j // self.branching)]
                rho = self.polarities[l][j]
                probs = probs * torch.where(same, (1 + rho) / 2, (1 - rho) / 2)
        return configs, probs


def make_hltm(depth: int, branching: int = 2, delta_lower: float = 0.8, delta_upper: float = 1.0, *,
              seed: int) -> HLTM:
    """Polarities |rho| ~ U[delta_lower, delta_upper] with a random sign, from a local generator."""
    if int(depth) < 1 or int(branching) < 2:
        raise BadInput(f"need depth >= 1 and branching >= 2, got depth={depth}, branching={branching}")
    if not 0.0 <= delta_lower <= delta_upper <= 1.0:
        raise BadInput(f"need 0 <= delta_lower <= delta_upper <= 1, got [{delta_lower}, {delta_upper}]")
    g = make_generator(seed)
    rhos = [torch.empty(0, dtype=torch.float64)]
    for l in range(1, int(depth) + 1):
        n = int(branching) ** l
        magnitude = delta_lower + (delta_upper - delta_lower) * torch.rand(n, generator=g, dtype=torch.float64)
        sign = torch.randint(0, 2, (n,), generator=g).to(torch.float64) * 2 - 1
        rhos.append(magnitude * sign)
    return HLTM(int(depth), int(branching), tuple(rhos))


def all_bit_vectors(n: int) -> torch.Tensor:
    """All 2^n vectors of n bits, (2^n, n) float64, most significant bit first."""
    codes = torch.arange(2 ** n)
    return ((codes[:, None] >> torch.arange(n - 1, -1, -1)) & 1).to(torch.float64)


# ----------------------------------------------------------------------------------------------
# Evaluation sets: leaf configurations with weights and exact posteriors
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalSet:
    """Leaf configurations ``x`` (X, c^L) with weights (X,) summing to 1 and exact E[z | x] by level.

    ``exact``: every configuration with its probability (enumeration). Otherwise a sample with
    weights 1/X; E[z | x] is still exact per row (belief propagation).
    """

    x: torch.Tensor
    weights: torch.Tensor
    posterior: list
    exact: bool
    p_given_root: torch.Tensor | None = None   # (2, X) when exact

    def augmented_data(self, dtype=torch.float64, device="cpu") -> DiscreteAugmentedData:
        """The HLTM as a DiscreteAugmentedData: samples z0 in {0, 1} (1/2 each), views x with p(x | z0)."""
        if not self.exact:
            raise BadInput("the exact operator needs the enumerated evaluation set (c^L <= 16 leaves)")
        views = self.x[None].expand(2, *self.x.shape).to(dtype=dtype, device=device)
        samples = torch.full((2,), 0.5, dtype=dtype, device=device)
        return DiscreteAugmentedData(views, self.p_given_root.to(dtype=dtype, device=device), samples)

    def ceilings(self) -> list:
        """Per level, per latent: sqrt(Var E[z_mu | x] / Var z_mu), the best corr any g(x) can reach."""
        return [2 * weighted_std(post, self.weights) for post in self.posterior]


def enumerate_leaves(model: HLTM) -> EvalSet:
    """Every leaf configuration with p(x | z0), p(x) and E[z | x] (c^L <= MAX_ENUMERATED_LEAVES)."""
    if model.n_leaves > MAX_ENUMERATED_LEAVES:
        raise BadInput(f"{model.describe()}: exact enumeration allows at most {MAX_ENUMERATED_LEAVES} leaves")
    x = all_bit_vectors(model.n_leaves)
    log_lik, posts = model.upward_downward(x)
    p_given_root = log_lik.exp().T.contiguous()
    return EvalSet(x, p_given_root.mean(0), posts[:-1], True, p_given_root)


def sampled_eval_set(model: HLTM, n: int, *, seed: int) -> EvalSet:
    """n leaf configurations drawn from the model, weights 1/n, exact E[z | x] per row."""
    x = model.sample_latents(n, make_generator(seed))[-1].to(torch.float64)
    _, posts = model.upward_downward(x)
    return EvalSet(x, torch.full((n,), 1.0 / n, dtype=torch.float64), posts[:-1], False)


def eval_set(model: HLTM, *, n_samples: int = 20_000, seed: int = 0) -> EvalSet:
    """Exact enumeration when the tree is small enough, else a sample of ``n_samples``."""
    if model.n_leaves <= MAX_ENUMERATED_LEAVES:
        return enumerate_leaves(model)
    return sampled_eval_set(model, n_samples, seed=seed)


# ----------------------------------------------------------------------------------------------
# Correlation, selectivity and the per-level metric
# ----------------------------------------------------------------------------------------------

def weighted_std(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Standard deviation over dim 0 under the probability weights (X,)."""
    w = weights.reshape(-1, *([1] * (values.dim() - 1)))
    mean = (w * values).sum(0)
    return ((w * (values - mean) ** 2).sum(0)).clamp_min(0).sqrt()


def _weighted_cov(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = weights[:, None, None]
    f_mean = (w * features).sum(0)
    m_mean = (weights[:, None] * posterior).sum(0)
    return (w * (features - f_mean) * (posterior - m_mean)[:, :, None]).sum(0)


def selectivity(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """E[f_k | z_mu = 1] - E[f_k | z_mu = 0] for every group mu and unit k, (n_l, hid).

    ``features`` (X, n_l, hid), ``posterior`` E[z_mu | x] (X, n_l). With P(z_mu = 1) = 1/2 this is
    exactly 4 Cov(f_k, E[z_mu | x]).
    """
    return 4 * _weighted_cov(features.double(), posterior, weights)


def unit_correlations(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """corr(f_k, z_mu) = Cov(f_k, E[z_mu | x]) / (sd f_k * 1/2) per group mu and unit k, (n_l, hid).

    Uses the posterior in place of z (same covariance, less noise) and the exact sd(z_mu) = 1/2.
    A unit that never varies has correlation 0.
    """
    features = features.double()
    sd = weighted_std(features, weights)
    cov = _weighted_cov(features, posterior, weights)
    return torch.where(sd > 0, cov / (0.5 * sd.clamp_min(torch.finfo(torch.float64).tiny)), torch.zeros_like(sd))


@dataclass(frozen=True)
class LatentRecovery:
    """Per level l = 0..L-1: unit correlations (n_l, hid), the best |corr| per latent and its ceiling."""

    correlations: list
    ceilings: list

    @property
    def best(self) -> list:
        return [c.abs().max(-1).values for c in self.correlations]

    def per_level(self) -> list:
        """The metric of THEORY.md §8: per level, the mean over latents of the best |corr|."""
        return [float(b.mean()) for b in self.best]

    def fraction_of_ceiling(self) -> list:
        """Per level, the mean over latents of best |corr| / ceiling."""
        return [float((b / c).mean()) for b, c in zip(self.best, self.ceilings)]


def latent_recovery(net: TreeMirrorNet, data: EvalSet) -> LatentRecovery:
    """Correlate every group's pre-activations with its own latent on the evaluation set."""
    p = next(net.parameters())
    with torch.no_grad():
        pres = net.pre_activations(data.x.to(dtype=p.dtype, device=p.device))
    corrs = [unit_correlations(pre.cpu(), post, data.weights) for pre, post in zip(pres, data.posterior)]
    return LatentRecovery(corrs, data.ceilings())


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSpec:
    """One HLTM training run (defaults: THEORY.md §8 at depth 3, InfoNCE in the -log form, H = 1)."""

    depth: int = 3
    branching: int = 2
    delta_lower: float = 0.8
    delta_upper: float = 1.0
    hid: int = 10
    steps: int = 2000
    batch: int = 128
    lr: float = 0.1
    tau: float = 0.1
    loss: str = "infonce"          # "infonce" (-tau log softmax) or "official" (-softmax of batch MSEs)
    share_root: bool = True        # False: the positive's root is independent (pure noise)
    eps: float = 1e-4              # f / (||f|| + eps), as the official code
    seed: int = 0
    dtype: torch.dtype = torch.float32

    def describe(self) -> str:
        extra = "" if self.share_root else ", share_root=False"
        return (f"depth={self.depth}, c={self.branching}, delta=[{self.delta_lower}, {self.delta_upper}], "
                f"hid={self.hid}, steps={self.steps}, batch={self.batch}, lr={self.lr}, tau={self.tau}, "
                f"loss={self.loss}, seed={self.seed}{extra}")


def describe_runs(results: list) -> str:
    """The settings of a group of runs and their seeds, for failure messages."""
    first = results[0].spec.describe().replace(f"seed={results[0].spec.seed}", "seeds=" + ",".join(
        str(r.spec.seed) for r in results))
    return first


@dataclass
class TrainResult:
    spec: TrainSpec
    model: HLTM
    net: TreeMirrorNet
    data: EvalSet
    initial: LatentRecovery
    final: LatentRecovery
    initial_state: dict = field(repr=False, default_factory=dict)
    seconds: float = 0.0


def build(spec: TrainSpec):
    """(model, net, evaluation set) of a run; every random choice follows from ``spec.seed``."""
    model = make_hltm(spec.depth, spec.branching, spec.delta_lower, spec.delta_upper,
                      seed=derive_seed(spec.seed, "tree"))
    net = TreeMirrorNet(spec.depth, spec.branching, spec.hid, seed=derive_seed(spec.seed, "net"), dtype=spec.dtype)
    return model, net, eval_set(model, seed=derive_seed(spec.seed, "eval"))


def normalised(f: torch.Tensor, eps: float) -> torch.Tensor:
    return f / (f.norm(dim=-1, keepdim=True) + eps)


def pair_loss(spec: TrainSpec, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The loss per run on normalised outputs (..., batch, hid) -> (...): InfoNCE in the -tau log form
    (r = 1/2 ||z - z'||^2, H = 1, mean over the batch) or the official code's -softmax of batch MSEs."""
    if spec.loss == "infonce":
        r_pos = pair_distance(anchor, positive)
        r_neg = pair_distance(anchor, negative)[..., None]
        return infonce_loss(r_pos, r_neg, tau=spec.tau).mean(-1)
    if spec.loss == "official":
        r_pos = ((anchor - positive) ** 2).mean((-2, -1))
        r_neg = ((anchor - negative) ** 2).mean((-2, -1))
        return -torch.softmax(torch.stack([-r_pos, -r_neg], -1) / spec.tau, -1)[..., 0]
    raise BadInput(f"unknown loss {spec.loss!r}; use 'infonce' or 'official'")


_PER_RUN_FIELDS = ("seed", "delta_lower", "delta_upper", "share_root")
"""Runs trained together as one ensemble may differ only in these fields."""


def train(spec: TrainSpec, progress=None) -> TrainResult:
    """One run: ``train_many([spec])``."""
    return train_many([spec], progress)[0]


def train_many(specs: list, progress=None) -> list:
    """Train several runs at once as one vmapped ensemble (same result as one by one, several times faster).

    SGD on fresh pairs each step, one data stream per run. The metric is taken before and after
    (exactly, by enumeration, when c^L <= 16). ``progress(n)`` is called after every n steps.
    """
    start = time.perf_counter()
    spec = specs[0]
    for other in specs:
        differing = [f for f in TrainSpec.__dataclass_fields__ if f not in _PER_RUN_FIELDS
                     and getattr(other, f) != getattr(spec, f)]
        if differing:
            raise BadInput(f"runs trained together may differ only in {_PER_RUN_FIELDS}; these differ: {differing}")
    built = [build(s) for s in specs]
    nets = [net for _, net, _ in built]
    initial_states = [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in nets]
    initial = [latent_recovery(net, data) for _, net, data in built]
    params, _ = stack_module_state(nets)
    template = copy.deepcopy(nets[0]).to("meta")
    forward = vmap(lambda p, x: functional_call(template, p, (x,)))
    generators = [make_generator(derive_seed(s.seed, "data")) for s in specs]
    with one_intra_op_thread():
        chunk = 250
        for first in range(0, spec.steps, chunk):
            n_steps = min(chunk, spec.steps - first)
            drawn = [model.sample_pairs(n_steps * spec.batch, g, share_root=s.share_root, dtype=spec.dtype)[:3]
                     for s, (model, _, _), g in zip(specs, built, generators)]
            anchor, positive, negative = (torch.stack(views) for views in zip(*drawn))   # (runs, rows, leaves)
            for step in range(n_steps):
                rows = slice(step * spec.batch, (step + 1) * spec.batch)
                xs = torch.cat([anchor[:, rows], positive[:, rows], negative[:, rows]], 1)
                out = normalised(forward(params, xs), spec.eps)
                loss = pair_loss(spec, *out.split(spec.batch, dim=1)).sum()   # runs are independent
                grads = torch.autograd.grad(loss, list(params.values()))
                with torch.no_grad():
                    for p, grad in zip(params.values(), grads):
                        p.sub_(spec.lr * grad)                                    # plain SGD
            if progress is not None:
                progress(n_steps)
    seconds = time.perf_counter() - start
    results = []
    for i, (s, (model, net, data)) in enumerate(zip(specs, built)):
        net.load_state_dict({k: v[i].detach() for k, v in params.items()})
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise BadInput(f"training diverged (non-finite weights): {s.describe()}")
        results.append(TrainResult(s, model, net, data, initial[i], latent_recovery(net, data), initial_states[i],
                                   seconds / len(specs)))
    return results


# ----------------------------------------------------------------------------------------------
# Checkers of the model (THEORY.md §8, "Exact facts")
# ----------------------------------------------------------------------------------------------

def family_z_threshold(n_comparisons: int) -> float:
    """The z threshold that gives a family of n comparisons the false-alarm rate of ONE comparison at
    Z_SCORE_FALSE_ALARM (Bonferroni): 4.0 for one entry, about 5.3 for 512."""
    single = 2 * norm.sf(Z_SCORE_FALSE_ALARM)
    return float(norm.isf(single / (2 * max(int(n_comparisons), 1))))


def _check_z_scores(estimate: torch.Tensor, expected: torch.Tensor, stderr: torch.Tensor, *, what: str,
                    label, context: str) -> float:
    """Raise unless every |estimate - expected| / stderr is within ``family_z_threshold``; return the worst z.

    Entries with zero stderr (exactly determined) are skipped. ``label(i)`` names flat entry i.
    """
    __tracebackhide__ = True
    compared = stderr > 0
    z = torch.where(compared, (estimate - expected).abs() / stderr.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    limit = family_z_threshold(int(compared.sum()))
    worst = int(z.flatten().argmax())
    z_max = float(z.flatten()[worst])
    if not z_max <= limit:
        where = what + (f" [{context}]" if context else "")
        raise IdentityViolation(
            f"{where}: {int((z > limit).sum())}/{int(compared.sum())} entries beyond {limit:.2f} standard errors "
            f"(one-comparison rate of {Z_SCORE_FALSE_ALARM} sigma, Bonferroni); worst {label(worst)}: sampled "
            f"{float(estimate.flatten()[worst]):.5f} vs exact {float(expected.flatten()[worst]):.5f}, z = {z_max:.1f} "
            f"(stderr {float(stderr.flatten()[worst]):.2e})")
    return z_max


def _node_label(model: HLTM, flat: int) -> str:
    for level in range(model.depth + 1):
        if flat < model.level_size(level):
            return f"level {level} node {flat}"
        flat -= model.level_size(level)
    raise BadInput(f"no node {flat}")


def check_transitions(model: HLTM, latents: list, *, context: str = "") -> float:
    """Sampled P(z_child = z_parent) per edge against (1 + rho)/2, within Z_SCORE_FALSE_ALARM stderrs."""
    __tracebackhide__ = True
    n = latents[0].shape[0]
    freq = torch.cat([(latents[l] == latents[l - 1].repeat_interleave(model.branching, 1)).double().mean(0)
                      for l in range(1, model.depth + 1)])
    p = torch.cat([(1 + model.polarities[l]) / 2 for l in range(1, model.depth + 1)])
    return _check_z_scores(freq, p, (p * (1 - p) / n).sqrt(), what="P(z_child = z_parent) vs (1 + rho)/2",
                           label=lambda i: f"edge into {_node_label(model, i + 1)} (n = {n})", context=context)


def check_latent_correlation(model: HLTM, latents: list, *, context: str = "") -> float:
    """Sampled E[(2 z_a - 1)(2 z_b - 1)] for every pair of nodes against the path product of rho.

    ``latents`` as returned by ``HLTM.sample_latents``; a sample whose node labels are shuffled fails.
    """
    __tracebackhide__ = True
    s = torch.cat(latents, 1).double() * 2 - 1
    n = s.shape[0]
    if s.shape[1] != model.n_nodes:
        raise BadInput(f"latents have {s.shape[1]} nodes, {model.describe()} has {model.n_nodes}")
    measured = s.T @ s / n
    expected = model.path_correlations()
    stderr = ((1 - expected ** 2) / n).sqrt()
    return _check_z_scores(measured, expected, stderr, what="E[(2z_a-1)(2z_b-1)] vs path product of rho",
                           label=lambda i: f"pair ({_node_label(model, i // model.n_nodes)}, "
                                           f"{_node_label(model, i % model.n_nodes)}) (n = {n})", context=context)


def check_enumeration_matches_sampling(model: HLTM, n: int, *, seed: int, sampler: HLTM | None = None,
                                       context: str = "") -> float:
    """Leaf-configuration frequencies given each root value (n draws per root, from ``sampler``, default the
    model itself) against the model's enumerated p(x | z0)."""
    __tracebackhide__ = True
    exact = enumerate_leaves(model)
    sampler = model if sampler is None else sampler
    g = make_generator(seed)
    weights = 2 ** torch.arange(model.n_leaves - 1, -1, -1)
    freqs = []
    for z0 in (0, 1):
        x = sampler.sample_latents(n, g, torch.full((n,), bool(z0)))[-1].long()
        freqs.append(torch.bincount((x * weights).sum(1), minlength=2 ** model.n_leaves).double() / n)
    freq, p = torch.stack(freqs), exact.p_given_root
    return _check_z_scores(freq, p, (p * (1 - p) / n).sqrt(), what="sampled leaf frequencies vs enumerated p(x | z0)",
                           label=lambda i: f"z0 = {i // p.shape[1]}, x = {exact.x[i % p.shape[1]].long().tolist()} "
                                           f"(n = {n} per root)", context=context)


# ----------------------------------------------------------------------------------------------
# The exact operator on the HLTM (THEORY.md §6 and §8): OP = V_{z0}[Kbar] by enumeration
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OperatorStep:
    """What one exact step w <- w + alpha * 2 OP w (gating frozen) did to layer ``name``."""

    name: str
    rank: int
    n_out: int
    top_eigenvalue: float
    top_growth: float          # factor on the selectivity along G's top eigenvector: 1 + 2 alpha lambda_max(OP)
    units_raised: float        # fraction of root units whose |selectivity to z0| rose


def root_selectivity(net: TreeMirrorNet, data: EvalSet, gates=None) -> torch.Tensor:
    """S = E[f | z0 = 1] - E[f | z0 = 0] for the root units (the output), (hid,)."""
    p = next(net.parameters())
    out = net(data.x.to(dtype=p.dtype, device=p.device), gates)
    return selectivity(out[:, None, :].cpu(), data.posterior[0], data.weights)[0]


def check_exact_operator(net: TreeMirrorNet, model: HLTM, *, alpha: float, context: str = "") -> list:
    """On every layer, by enumeration (float64): OP = V_{z0}[Kbar] = 1/4 Delta Delta^T with
    Delta = Kbar(z0=1) - Kbar(z0=0) (so rank <= n_L); S := Delta^T w is the root units' selectivity to z0
    and w^T OP w = ||S||^2 / 4; and one step w <- w + alpha 2 OP w with gating frozen gives exactly
    S' = (I + alpha/2 G) S, G = Delta^T Delta: power iteration on the selectivity, fastest along G's top
    eigenvector (factor 1 + 2 alpha lambda_max(OP)). At the top layer G = ||d||^2 I, so every root unit's
    selectivity is multiplied by the same factor. Returns one ``OperatorStep`` per layer.
    """
    __tracebackhide__ = True

    data = enumerate_leaves(model)
    aug = data.augmented_data(dtype=torch.float64)
    x = data.x
    gates = net.gates(x)
    s = root_selectivity(net, data).detach()
    steps = []
    for name in net.layer_names():
        where = f"layer {name} (level {net.level_of(name)}), {context}"
        w = dict(net.named_parameters())[name]
        op = operator_dense(net, name, aug).detach()
        kbar = mean_connections(net, name, aug).detach()
        delta = kbar[1] - kbar[0]                                        # (P, n_L)
        assert_identity(op, op.T, what="OP symmetric", context=where)
        assert_identity(op, delta @ delta.T / 4, what="OP = V_z0[Kbar] = 1/4 Delta Delta^T", context=where)
        eig = symmetric_eigenvalues(op)
        tol = tolerance(torch.float64, "eigenvalue")
        if not float(eig[0]) >= -(tol.atol + tol.rtol * float(eig[-1])):
            raise IdentityViolation(f"OP not PSD: smallest eigenvalue {float(eig[0]):.3e}, largest "
                                    f"{float(eig[-1]):.3e}; allowed {tol} [{where}]")
        rank = numerical_rank(eig)
        if rank > net.hid:
            raise IdentityViolation(f"rank(OP) = {rank} > n_L = {net.hid} [{where}]")
        flat = w.detach().flatten()
        assert_identity(delta.T @ flat, s, what="Delta^T w = E[f|z0=1] - E[f|z0=0]", context=where)
        assert_identity(flat @ op @ flat, s.dot(s) / 4, what="w^T OP w = ||S||^2/4", context=where)
        step = 2 * alpha * operator_times(net, name, aug).detach()
        saved = w.detach().clone()
        with torch.no_grad():
            w.add_(step.reshape(w.shape))
            try:
                s_new = root_selectivity(net, data, gates)
            finally:
                w.copy_(saved)
        gram = delta.T @ delta
        assert_identity(s_new, s + alpha / 2 * gram @ s, what="frozen-gating step: S' = (I + alpha/2 G) S",
                        context=where)
        assert_identity(symmetric_eigenvalues(gram) / 4, eig[-net.hid:], kind="eigenvalue",
                        what="non-zero spectrum of OP = spectrum of G / 4", context=where)
        if net.level_of(name) == 0:
            factor = 1 + alpha / 2 * float(gram.trace()) / net.hid
            assert_identity(s_new, factor * s, what="top layer: every root unit's selectivity times 1 + alpha/2 ||d||^2",
                            context=where)
        steps.append(OperatorStep(name, rank, net.hid, float(eig[-1]), 1 + 2 * alpha * float(eig[-1]),
                                  float((s_new.abs() > s.abs()).double().mean())))
    return steps


# ----------------------------------------------------------------------------------------------
# Latent recovery and the mechanism (THEORY.md §8, "Claims the suite must measure")
# ----------------------------------------------------------------------------------------------

# Statistical thresholds of the default case (depth 3, c = 2, hid = 10, delta_lower = 0.8, InfoNCE, tau = 0.1,
# 2000 SGD steps, batch 128, lr 0.1). The metric is exact (enumeration), so the spread is that of the seeds:
# tree polarities, initial weights and SGD data. Measured on seeds 0-23, then on seeds 106-129, which showed
# heavier tails than the first 24 (a root-level fall of 0.030, a root fraction of 0.897); the thresholds below
# come from all 48. "6-seed mean" quantiles: 100000 random 6-seed subsets of the 48. The checks run on
# SUITE_SEEDS = 100-105, which set no threshold.

RECOVERY_MIN_MEAN_ROOT_GAIN = 0.0
"""The root-level best |corr|, averaged over the runs, must rise: mean gain > this. Measured per run
(48 seeds): mean 0.058, sd 0.040, min -0.030 (44/48 rose, so a rise in every run is NOT asserted).
6-seed mean: 0.1% quantile 0.015. Pure-noise training (positive root not shared): 99.9% quantile -0.020."""

RECOVERY_MAX_MEAN_LEVEL_DROP = 0.01
"""No level's best |corr| may fall on average over the runs by more. 6-seed mean change, 0.1% quantile:
-0.006 at the level below the root, -0.001 at the level above the leaves (per run sd 0.017 and 0.0007)."""

RECOVERY_MAX_RUN_LEVEL_DROP = 0.06
"""No level of any run may fall by more: twice the largest fall in 48 runs (0.030, at the root; 0.019 below)."""

RECOVERY_MIN_MEAN_ROOT_FRACTION = 0.91
"""The trained root level, averaged over the runs, must reach this fraction of its Bayes ceiling. Per run
(48 seeds): 0.963 +- 0.016 (sd), min 0.897. 6-seed mean: 0.1% quantile 0.941; pure-noise training 99.9%
quantile 0.875. 0.91 lies between."""

SHARE_MIN_GROWTH = 1.0
"""Geometric mean over runs of the growth of the root group's z0-explained variance share must exceed this.
Per run (48 seeds): geometric mean x1.32, 42/48 grew; pure-noise training x0.51. 6-seed geometric mean:
0.1% quantile x1.006 (real), 99.9% quantile x1.044 (noise); 1.0 = "grows" separates all but those tails."""

HID_MIN_RAW_GAP = 0.05
HID_MIN_FRACTION_GAP = 0.05
"""hid 10 against hid 2 (delta_lower 0.8), mean over 6 paired seeds of the trained root-level gap. Measured
(24 seeds): raw 0.207 (sd 0.220, every pair > 0, min 0.011), of ceiling 0.226; 0.1% quantiles of a 6-seed mean
(subsampling): 0.060 raw, 0.066 of ceiling."""

POLARITY_MIN_RAW_GAP = 0.1
POLARITY_MIN_FRACTION_GAP = 0.02
"""delta_lower 0.9 against 0.5 (hid 10), mean over 6 paired seeds of the trained root-level gap. Measured
(24 seeds): raw 0.285 (sd 0.108, every pair > 0), of ceiling 0.075 (every pair > 0, min 0.011); 0.1%
quantiles of a 6-seed mean: 0.171 raw, 0.031 of ceiling."""

OFFICIAL_STEPS = 10_000
"""The official run's length: 20 epochs of 64000 samples at batch 128 (conf/hltm.yaml)."""
OFFICIAL_SEEDS = 4
OFFICIAL_MIN_MEAN_ROOT_FRACTION = 0.9
"""Slow check at the official settings (depth 5, 32 leaves: metric and ceiling on 20000 sampled inputs with
exact posteriors). Measured trained root level / ceiling, 10000 steps: 0.951-0.960 (seeds 0-3), 0.943-0.971
(seeds 100-103); root gain 0.14-0.32 per seed; largest fall at any level 0.003. The other thresholds are the
default case's."""

SUITE_SEEDS = tuple(range(100, 106))
"""Seeds of the default checks: disjoint from the measurement seeds 0-23 the thresholds come from."""


def suite_runs(hid: int = 10) -> dict:
    """The default runs, trained once per process and shared by the checkers and their fault tests:
    {(delta_lower, share_root): [TrainResult per seed of SUITE_SEEDS]}. hid = 10 trains delta_lower 0.5,
    0.8 and 0.9 and the pure-noise fault (0.8, share_root=False) as one ensemble; other hid train 0.8 only."""
    return _suite_runs(int(hid))


@functools.lru_cache(maxsize=4)
def _suite_runs(hid: int) -> dict:
    cases = [(0.5, True), (0.8, True), (0.9, True), (0.8, False)] if hid == 10 else [(0.8, True)]
    specs = [TrainSpec(hid=hid, delta_lower=d, share_root=shared, seed=s) for d, shared in cases for s in SUITE_SEEDS]
    results = train_many(specs)
    return {case: results[i * len(SUITE_SEEDS):(i + 1) * len(SUITE_SEEDS)] for i, case in enumerate(cases)}


def recovery_table(results: list) -> str:
    """One line per run: seed, per-level metric init -> final, root fraction of the ceiling."""
    lines = []
    for r in results:
        levels = ", ".join(f"L{l} {a:.3f}->{b:.3f}" for l, (a, b) in
                           enumerate(zip(r.initial.per_level(), r.final.per_level())))
        lines.append(f"  seed {r.spec.seed} (delta_lower {r.spec.delta_lower}): {levels}; root/ceiling "
                     f"{r.initial.fraction_of_ceiling()[0]:.3f}->{r.final.fraction_of_ceiling()[0]:.3f}")
    return "\n".join(lines)


def check_recovery(results: list, *, min_mean_root_gain: float = RECOVERY_MIN_MEAN_ROOT_GAIN,
                   max_mean_level_drop: float = RECOVERY_MAX_MEAN_LEVEL_DROP,
                   max_run_level_drop: float = RECOVERY_MAX_RUN_LEVEL_DROP,
                   min_mean_root_fraction: float = RECOVERY_MIN_MEAN_ROOT_FRACTION, context: str = "") -> None:
    """Latent recovery over several runs (THEORY.md §8, "Claims the suite must measure"): the root-level
    metric rises on average (mean gain > ``min_mean_root_gain``); no level falls on average by more than
    ``max_mean_level_drop``, nor in any run by more than ``max_run_level_drop``; the trained root level
    reaches on average ``min_mean_root_fraction`` of its Bayes ceiling."""
    __tracebackhide__ = True
    failures = []
    n = len(results)
    changes = [[b - a for a, b in zip(r.initial.per_level(), r.final.per_level())] for r in results]
    mean_changes = [sum(c[l] for c in changes) / n for l in range(len(changes[0]))]
    if not mean_changes[0] > min_mean_root_gain:
        failures.append(f"root-level best |corr| changed by {mean_changes[0]:+.3f} on average over {n} runs, "
                        f"need > {min_mean_root_gain:+}")
    for level, change in enumerate(mean_changes):
        if not change >= -max_mean_level_drop:
            failures.append(f"level {level} best |corr| fell by {-change:.3f} on average, allowed {max_mean_level_drop}")
    for r, change in zip(results, changes):
        for level, c in enumerate(change):
            if not c >= -max_run_level_drop:
                failures.append(f"seed {r.spec.seed}: level {level} best |corr| fell by {-c:.3f}, "
                                f"allowed {max_run_level_drop} in one run")
    fraction = sum(r.final.fraction_of_ceiling()[0] for r in results) / n
    if not fraction >= min_mean_root_fraction:
        failures.append(f"trained root-level recovery is {fraction:.3f} of the Bayes ceiling on average, "
                        f"need >= {min_mean_root_fraction}")
    if failures:
        raise IdentityViolation(f"HLTM latent recovery [{context}] failed:\n  " + "\n  ".join(failures)
                                + "\nper run:\n" + recovery_table(results))


def check_paired_improvement(better: list, worse: list, *, what: str, min_raw_gap: float, min_fraction_gap: float,
                             level: int = 0, context: str = "") -> dict:
    """Paired over seeds: the mean over seeds of (trained metric of ``better`` - that of ``worse``) at ``level``
    is at least ``min_raw_gap``, and at least ``min_fraction_gap`` as a fraction of the ceiling.
    Returns the per-seed gaps."""
    __tracebackhide__ = True
    if [r.spec.seed for r in better] != [r.spec.seed for r in worse]:
        raise BadInput("a paired comparison needs the same seeds in the same order")
    raw = [b.final.per_level()[level] - w.final.per_level()[level] for b, w in zip(better, worse)]
    frac = [b.final.fraction_of_ceiling()[level] - w.final.fraction_of_ceiling()[level] for b, w in zip(better, worse)]
    mean_raw, mean_frac = sum(raw) / len(raw), sum(frac) / len(frac)
    if not (mean_raw >= min_raw_gap and mean_frac >= min_fraction_gap):
        rows = "\n".join(
            f"  seed {b.spec.seed}: {w.final.per_level()[level]:.3f} -> {b.final.per_level()[level]:.3f} (gap {g:+.3f}); "
            f"of ceiling {w.final.fraction_of_ceiling()[level]:.3f} -> {b.final.fraction_of_ceiling()[level]:.3f} "
            f"(gap {f:+.3f})" for b, w, g, f in zip(better, worse, raw, frac))
        raise IdentityViolation(
            f"{what} [{context}]: mean paired gap of the trained level-{level} best |corr| is {mean_raw:+.3f} raw "
            f"(need >= {min_raw_gap}) and {mean_frac:+.3f} as a fraction of the ceiling (need >= {min_fraction_gap}); "
            f"{sum(g > 0 for g in raw)}/{len(raw)} pairs positive\n{rows}")
    return {"raw": raw, "fraction": frac}


def explained_share(features: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per group: tr V[E[f | z_mu]] / tr V[f], the share of the group's variance explained by its latent, (n_l,).

    Equals sum_k s_k^2 / 4 / sum_k Var f_k with s the selectivity. For the root group and the layer-l
    operator it is w^T OP w / tr V[f] (``check_exact_operator`` checks w^T OP w = ||S||^2/4).
    """
    s = selectivity(features, posterior, weights)
    var = weighted_std(features.double(), weights) ** 2
    return (s ** 2 / 4).sum(-1) / var.sum(-1).clamp_min(torch.finfo(torch.float64).tiny)


def initial_net(result: TrainResult) -> TreeMirrorNet:
    """The run's network as it was before training."""
    s = result.spec
    net = TreeMirrorNet(s.depth, s.branching, s.hid, seed=derive_seed(s.seed, "net"), dtype=s.dtype)
    net.load_state_dict(result.initial_state)
    return net


def root_explained_share(result: TrainResult) -> tuple:
    """(before, after) training: the share of the root group's variance explained by z0."""
    def share(net):
        with torch.no_grad():
            pre = net.pre_activations(result.data.x.to(result.spec.dtype))[0]
        return float(explained_share(pre, result.data.posterior[0], result.data.weights)[0])
    return share(initial_net(result)), share(result.net)


def check_selectivity_amplified(results: list, *, min_growth: float = SHARE_MIN_GROWTH, context: str = "") -> list:
    """The mechanism in the form that holds: training multiplies the share of the root group's variance
    explained by z0 (for the top layer, w^T OP w over the total variance) by a geometric mean over runs of more
    than ``min_growth``. Returns the per-run (before, after)."""
    __tracebackhide__ = True
    shares = [root_explained_share(r) for r in results]
    growth = math.exp(sum(math.log(b / a) for a, b in shares) / len(shares))
    if not growth > min_growth:
        rows = "\n".join(f"  seed {r.spec.seed}: {a:.3f} -> {b:.3f} (x{b / a:.2f})" for r, (a, b) in zip(results, shares))
        raise IdentityViolation(f"share of the root group's variance explained by z0 [{context}]: geometric-mean "
                                f"growth x{growth:.3f} over {len(shares)} runs, need > x{min_growth}\n{rows}")
    return shares


@dataclass(frozen=True)
class UnitForms:
    """Per-unit forms of "initial selectivity is amplified", pooled over runs and the given levels."""

    n_units: int
    spearman_init_final: float     # |corr| at init vs after training
    spearman_init_gain: float      # |corr| at init vs its gain (the naive form)
    sign_kept: float               # fraction of units whose corr keeps its sign
    best_persists: float           # fraction of latents whose most correlated unit is still the most correlated
    chance_best_persists: float    # 1 / hid


def unit_forms(results: list, levels=(0, 1)) -> UnitForms:
    """Measure the per-unit forms over the units of the given levels (THEORY.md §8, the mechanism)."""
    a0, a1, kept, persists = [], [], [], []
    for r in results:
        for l in levels:
            c0, c1 = r.initial.correlations[l], r.final.correlations[l]
            a0.append(c0.abs().flatten())
            a1.append(c1.abs().flatten())
            kept.append((c0.sign() == c1.sign()).flatten())
            persists.append(c0.abs().argmax(-1) == c1.abs().argmax(-1))
    a0, a1 = torch.cat(a0).numpy(), torch.cat(a1).numpy()
    return UnitForms(len(a0), float(spearmanr(a0, a1)[0]), float(spearmanr(a0, a1 - a0)[0]),
                     float(torch.cat(kept).double().mean()), float(torch.cat(persists).double().mean()),
                     1.0 / results[0].spec.hid)
