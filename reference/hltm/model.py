"""The hierarchical latent tree model (docs/THEORY.md §8): tree, sampler, belief propagation, brute-force
joint and evaluation sets.

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

from dataclasses import dataclass

import torch

from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.errors import BadInput
from dualnet_ssl.hltm.metrics import weighted_std
from dualnet_ssl.seeding import make_generator

MAX_ENUMERATED_LEAVES = 16
"""Exact enumeration of p(x | z0) over all 2^(c^L) leaf configurations: 2^16 = 65536 rows at most."""

MAX_ENUMERATED_NODES = 20
"""Brute-force joint of all latents (the reference twin of belief propagation): 2^20 rows at most."""


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

    def subtree_leaves(self, level: int, j: int) -> range:
        """The leaf indices under node j at ``level``."""
        return subtree_leaves(self.depth, self.branching, level, j)

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


def subtree_leaves(depth: int, branching: int, level: int, j: int) -> range:
    """The leaves under node j at ``level`` of a complete tree: contiguous in level order."""
    span = branching ** (depth - level)
    return range(j * span, (j + 1) * span)


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


def brute_force_leaf_tables(model: HLTM):
    """From the brute-force joint: p(x | z0) (2, X), p(x) (X,) and E[z_node | x] (X, n_nodes), x in
    ``all_bit_vectors`` order. The reference twin of belief propagation (no message passing)."""
    configs, probs = model.joint_table()
    leaves = configs[:, -model.n_leaves:].long()
    code = (leaves * 2 ** torch.arange(model.n_leaves - 1, -1, -1)).sum(1)
    n_x = 2 ** model.n_leaves
    joint = torch.zeros(2, n_x, dtype=torch.float64)
    joint.index_put_((configs[:, 0].long(), code), probs, accumulate=True)
    p_x = joint.sum(0)
    z_and_x = torch.zeros(n_x, model.n_nodes, dtype=torch.float64).index_add_(0, code, probs[:, None] * configs.double())
    return 2 * joint, p_x, z_and_x / p_x[:, None]


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


def brute_force_eval_set(model: HLTM) -> EvalSet:
    """The enumerated evaluation set built from the brute-force joint alone (no belief propagation)."""
    p_given_root, p_x, posterior = brute_force_leaf_tables(model)
    levels = [posterior[:, model.node_index(l, 0):model.node_index(l, 0) + model.level_size(l)]
              for l in range(model.depth)]
    return EvalSet(all_bit_vectors(model.n_leaves), p_x, levels, True, p_given_root)
