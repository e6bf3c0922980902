"""The covariance operator at the lower layers of the HLTM network (docs/THEORY.md §8, "Lower layers").

For a group g at level l, its inputs h_g(x) (the leaf bits at the lowest level, else its children's ReLU outputs)
depend only on the leaves of g's subtree. Their selectivity to g's own latent, a_g = E[h_g | z_g = 1] -
E[h_g | z_g = 0], is what the lower-layer claim is about: by the tree's Markov property
E[h_g | z0 = 1] - E[h_g | z0 = 0] = rho_0g a_g (rho_0g the product of the polarities from the root to g).
When the gating at and above level l does not depend on x (``ConstantGatesAbove``; at the top layer this is
always so), the Jacobian J_g from g's pre-activations to the output is a constant and
OP_l = 1/4 Delta Delta^T with Delta[(g, u, i), o] = rho_0g J_g[o, u] a_g[i], so every eigenvector of OP_l with a
non-zero eigenvalue has, in each group's block, every row parallel to a_g: alignment 1.
With the network's own ReLU gates (J_g varies with x) the alignment is a measured figure.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jacrev

from dualnet_ssl.compare import assert_identity
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.hltm.metrics import selectivity
from dualnet_ssl.hltm.model import HLTM, EvalSet, brute_force_leaf_tables, enumerate_leaves
from dualnet_ssl.networks import TreeMirrorNet, gate, output_with_layer
from dualnet_ssl.seeding import make_generator


class ConstantGatesAbove(TreeMirrorNet):
    """A ``TreeMirrorNet`` whose gates at levels <= ``top_level`` are fixed patterns (c^l, hid), the same for
    every input; below, the network's own ReLU gates. Frozen gating made x-independent above a layer."""

    def __init__(self, net: TreeMirrorNet, patterns: dict):
        super().__init__(net.depth, net.branching, net.hid, seed=0, negative_slope=net.negative_slope,
                         dtype=next(net.parameters()).dtype)
        self.load_state_dict(net.state_dict())
        for level, pattern in patterns.items():
            if not 0 < level < net.depth or tuple(pattern.shape) != (net.branching ** level, net.hid):
                raise BadInput(f"gate pattern for level {level} must have shape ({net.branching ** level}, "
                               f"{net.hid}) and 0 < level < depth {net.depth}; got {tuple(pattern.shape)}")
        self.patterns = dict(patterns)

    def forward_cache(self, x, gates=None):
        if x.dim() != 2 or x.shape[1] != self.n_leaves:
            raise BadInput(f"TreeMirrorNet expects inputs of shape (batch, {self.n_leaves}), got {tuple(x.shape)}")
        pres, used = [None] * self.depth, [None] * self.depth
        h = x
        for i, w in enumerate(self.weights):
            level = self.depth - 1 - i
            pre = torch.einsum("bgi,goi->bgo", h.reshape(x.shape[0], w.shape[0], w.shape[2]), w)
            pres[level] = pre
            if level > 0:
                pattern = self.patterns.get(level)
                d = gate(pre, self.negative_slope) if pattern is None else pattern.to(pre.dtype)[None].expand_as(pre)
                used[level] = d
                h = d * pre
        return pres, used


def random_gate_patterns(net: TreeMirrorNet, top_level: int, *, seed: int, linear: bool = False) -> dict:
    """x-independent 0/1 gate patterns for levels 1..top_level (all ones when ``linear``), from ``seed``."""
    g = make_generator(seed)
    dtype = next(net.parameters()).dtype
    return {level: torch.ones(net.branching ** level, net.hid, dtype=dtype) if linear else
            torch.randint(0, 2, (net.branching ** level, net.hid), generator=g).to(dtype)
            for level in range(1, top_level + 1)}


def group_inputs(net: TreeMirrorNet, x: torch.Tensor, level: int) -> torch.Tensor:
    """h_g(x) for every group g at ``level``: (X, c^level, fan_in), the leaf bits or the children's outputs."""
    with torch.no_grad():
        pres, gates = net.forward_cache(x.to(next(net.parameters()).dtype))
    if level == net.depth - 1:
        h = x
    else:
        h = gates[level + 1] * pres[level + 1]
    return h.reshape(x.shape[0], net.branching ** level, -1).double()


def input_selectivity(net: TreeMirrorNet, data: EvalSet, level: int) -> torch.Tensor:
    """a_g = E[h_g | z_g = 1] - E[h_g | z_g = 0] for every group at ``level``, (c^level, fan_in)."""
    return selectivity(group_inputs(net, data.x, level), data.posterior[level], data.weights)


def upper_jacobians(net: TreeMirrorNet, patterns: dict, level: int) -> torch.Tensor:
    """J_g = d f_out / d pre_g (hid_out, hid) for every group at ``level``, (c^level, hid, hid), in closed form
    from the weights and x-independent gates: J_root = I, J_child = J_parent W_parent[:, slot] diag(d_child)."""
    c, hid = net.branching, net.hid
    jac = torch.eye(hid, dtype=torch.float64)[None]
    for l in range(1, level + 1):
        w_parent = net.weights[net.depth - 1 - (l - 1)].detach().double()          # (c^(l-1), hid, c*hid)
        children = []
        for j in range(c ** l):
            parent, slot = divmod(j, c)
            block = w_parent[parent][:, slot * hid:(slot + 1) * hid]
            children.append(jac[parent] @ block * patterns[l][j].double()[None, :])
        jac = torch.stack(children)
    return jac


def path_polarities(model: HLTM, level: int) -> torch.Tensor:
    """rho_0g for every node g at ``level``: the product of the polarities from the root, (c^level,)."""
    rho = torch.ones(1, dtype=torch.float64)
    for l in range(1, level + 1):
        rho = rho.repeat_interleave(model.branching) * model.polarities[l]
    return rho


def joint_input_selectivity(net: TreeMirrorNet, model: HLTM, level: int) -> torch.Tensor:
    """a_g from the brute-force joint of all latents (no belief propagation): 4 Cov(h_g, E[z_g | x]) under p(x)."""
    _, p_x, posterior = brute_force_leaf_tables(model)
    first = model.node_index(level, 0)
    z = posterior[:, first:first + model.level_size(level)]
    h = group_inputs(net, enumerate_leaves(model).x, level)
    h_c = h - torch.einsum("x,xgi->gi", p_x, h)
    return 4 * torch.einsum("x,xgi,xg->gi", p_x, h_c, z - p_x @ z)


def selectivity_alignment(direction: torch.Tensor, a: torch.Tensor, shape) -> torch.Tensor:
    """Alignment of a layer direction (flat, of the weights' ``shape`` (groups, hid, fan_in)) with the selectivity
    directions a (groups, fan_in): sqrt(sum_g ||M_g a_g||^2 / ||a_g||^2 / sum_g ||M_g||_F^2), in [0, 1]; 1 iff
    every row of every group block M_g is parallel to a_g (docs/THEORY.md §8)."""
    blocks = direction.reshape(shape).double()
    unit = a / a.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    along = torch.einsum("goi,gi->go", blocks, unit)
    return (along.pow(2).sum() / blocks.pow(2).sum()).sqrt()


def operator_factor(net: TreeMirrorNet, name: str, data: EvalSet) -> torch.Tensor:
    """Delta = Kbar_l(z0 = 1) - Kbar_l(z0 = 0), (P, n_L), so that OP_l = V_z0[Kbar_l] = 1/4 Delta Delta^T (z0 takes two
    equally likely values). By autograd: Delta^T = d/dw_l of (p(x | 1) - p(x | 0)) . f(x), p(x | z0) from belief
    propagation; n_L backward passes, no dense K."""
    if not data.exact:
        raise BadInput("the lower-layer operator needs the enumerated evaluation set (c^L <= 16 leaves)")
    w = dict(net.named_parameters())[name].detach()
    contrast = (data.p_given_root[1] - data.p_given_root[0]).to(w.dtype)
    x = data.x.to(w.dtype)
    jac = jacrev(lambda weight: contrast @ output_with_layer(net, name, weight, x))(w)   # (n_L, *W.shape)
    return jac.detach().reshape(jac.shape[0], -1).T


def top_direction(delta: torch.Tensor) -> torch.Tensor:
    """The top eigenvector of OP = 1/4 Delta Delta^T: Delta's top left singular vector."""
    return torch.linalg.svd(delta, full_matrices=False)[0][:, 0]


def chance_alignment(fan_in: int) -> float:
    """sqrt(1 / fan_in): the root mean square alignment of an isotropic random direction (its squared alignment
    has mean exactly 1 / fan_in)."""
    return (1.0 / fan_in) ** 0.5


@dataclass(frozen=True)
class LayerAlignment:
    """One layer: the alignment of OP_l's top eigenvector with the selectivity directions, and chance."""

    name: str
    level: int
    alignment: float
    chance: float


def check_lower_layer_operator(net: TreeMirrorNet, model: HLTM, level: int, patterns: dict, *,
                               context: str = "") -> float:
    """Evidence (two routes): with gates x-independent at and above ``level``, Delta = Kbar_l(z0 = 1) -
    Kbar_l(z0 = 0) (``operator_factor``: autograd, p(x | z0) from belief propagation) equals
    rho_0g J_g[o, u] a_g[i] (a_g from the brute-force joint, J_g in closed form, rho_0g the path product), so
    OP_l = 1/4 Delta Delta^T. Consequence, checked: OP_l's top eigenvector has alignment 1 with the selectivity
    directions (eigenvalue tolerance). Returns the alignment."""
    __tracebackhide__ = True
    missing = [l for l in range(1, level + 1) if l not in patterns]
    if missing:
        raise BadInput(f"gate patterns missing for levels {missing}: the identity needs x-independent gates at "
                       f"every level from 1 to {level}")
    frozen = ConstantGatesAbove(net, {l: p for l, p in patterns.items() if l <= level})
    name = frozen.layer_names()[net.depth - 1 - level]
    where = f"layer {name} (level {level}), {model.describe()}, {context}"
    delta = operator_factor(frozen, name, enumerate_leaves(model)).double()
    a = joint_input_selectivity(frozen, model, level)
    jac = upper_jacobians(frozen, frozen.patterns, level)
    expected = torch.einsum("g,gou,gi->guio", path_polarities(model, level), jac, a).reshape(-1, net.hid)
    assert_identity(delta, expected, context=where,
                    what="Kbar_l(z0=1) - Kbar_l(z0=0) = rho_0g J_g (x) a_g (x-independent gating above)")
    if not float(delta.norm()) > 0:
        raise BadInput(f"OP_l is zero [{where}]: the gate patterns block every path to the output")
    alignment = selectivity_alignment(top_direction(delta), a, net.weights[net.depth - 1 - level].shape)
    assert_identity(alignment, torch.ones((), dtype=torch.float64), kind="eigenvalue", context=where,
                    what="alignment of OP_l's top eigenvector with a_g = 1")
    return float(alignment)


def layer_alignments(net: TreeMirrorNet, model: HLTM, levels=None) -> list:
    """With the network's own ReLU gates: per layer (``levels``, default all), the alignment of OP_l's top
    eigenvector with a_g (from belief propagation's posteriors), beside chance sqrt(1 / fan_in)."""
    data = enumerate_leaves(model)
    out = []
    for name in net.layer_names():
        level = net.level_of(name)
        if levels is not None and level not in levels:
            continue
        shape = dict(net.named_parameters())[name].shape
        direction = top_direction(operator_factor(net, name, data).double())
        out.append(LayerAlignment(name, level, float(selectivity_alignment(direction, input_selectivity(net, data, level),
                                                                           shape)), chance_alignment(shape[-1])))
    return out


def check_alignment_above(alignments: list, *, minimum: float, levels, context: str = "") -> None:
    """The measured claim: at every given level, the mean over runs of the top eigenvector's alignment exceeds
    ``minimum`` (a threshold set on other seeds), which lies above chance."""
    __tracebackhide__ = True
    minimum = float(minimum)
    for level in levels:
        rows = [a for run in alignments for a in run if a.level == level]
        if not rows:
            raise BadInput(f"no layer at level {level}")
        mean = sum(r.alignment for r in rows) / len(rows)
        chance = max(r.chance for r in rows)
        if not (mean > minimum and minimum > chance):
            raise IdentityViolation(
                f"alignment of OP_l's top eigenvector with the latents' selectivity directions, level {level} "
                f"[{context}]: mean {mean:.3f} over {len(rows)} runs, need > {minimum} (chance {chance:.3f}); "
                f"per run " + ", ".join(f"{r.alignment:.3f}" for r in rows))
