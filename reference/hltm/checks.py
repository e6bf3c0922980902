"""Exact checks of the HLTM and its network (docs/THEORY.md §8, "Exact facts" and "Network").

Evidence (an independent route on each side): belief propagation against the brute-force joint of all
latents; the tree wiring of ``TreeMirrorNet`` by perturbing leaves; the metric's unit correlations and
Bayes ceilings against the joint; the exact operator against Delta from the joint and the frozen-gating
step against the structured product. ``check_exact_operator`` also runs sanity assertions that hold by
construction; its docstring says which.
"""
from __future__ import annotations

import torch

from dualnet_ssl.checks import assert_psd
from dualnet_ssl.compare import assert_identity, fail
from dualnet_ssl.connection import connection_dense
from dualnet_ssl.hltm.metrics import latent_recovery, selectivity, unit_correlations
from dualnet_ssl.hltm.model import HLTM, EvalSet, all_bit_vectors, brute_force_leaf_tables, enumerate_leaves, \
    subtree_leaves
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.operators import numerical_rank, operator_dense, operator_times, symmetric_eigenvalues
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.thresholds import EXACT_RANK_EXCESS
from dualnet_ssl.tolerances import tolerance


def _level_nodes(model: HLTM, table: torch.Tensor, level: int) -> torch.Tensor:
    """The columns of a per-node table (rows, n_nodes) that belong to ``level``."""
    first = model.node_index(level, 0)
    return table[:, first:first + model.level_size(level)]


def check_belief_propagation(model: HLTM, *, context: str = "") -> None:
    """Evidence: the upward-downward pass against the brute-force joint, on every leaf configuration:
    p(x | z0) and the posterior E[z_mu | x] of every latent at every level."""
    __tracebackhide__ = True
    p_given_root, _, posterior = brute_force_leaf_tables(model)
    log_lik, posts = model.upward_downward(all_bit_vectors(model.n_leaves))
    where = f"{model.describe()}, {context}"
    assert_identity(log_lik.exp().T, p_given_root, what="p(x | z0), belief propagation vs brute-force joint",
                    context=where)
    for level in range(model.depth + 1):
        assert_identity(posts[level], _level_nodes(model, posterior, level), context=where,
                        what=f"E[z | x] at level {level}, belief propagation vs brute-force joint")


def check_tree_wiring(net: TreeMirrorNet, *, seed: int, n_inputs: int = 64, context: str = "") -> None:
    """Evidence: each group's pre-activation moves when, and only when, a leaf of its own subtree moves.

    Bumps one leaf at a time on ``n_inputs`` Gaussian inputs and records which groups change; the
    subtree of node j at level l is the leaves j c^(L-l) .. (j+1) c^(L-l) - 1 (the model's numbering).
    Every gate is held open, so the wiring alone decides who sees whom: with the ReLU's own gates a narrow
    group whose units are all off for every input hides its leaves (found with DUALNET_UNLOCK_SEED, hid 2).
    """
    __tracebackhide__ = True
    p = next(net.parameters())
    x = torch.randn(n_inputs, net.n_leaves, generator=make_generator(seed), dtype=torch.float64).to(p.dtype)
    tol = tolerance(p.dtype, "exact")
    open_gates = [None] + [torch.ones(n_inputs, net.branching ** level, net.hid, dtype=p.dtype, device=p.device)
                           for level in range(1, net.depth)]
    with torch.no_grad():
        base = net.forward_cache(x, open_gates)[0]
        seen = [torch.zeros(net.branching ** l, net.n_leaves, dtype=torch.bool) for l in range(net.depth)]
        for leaf in range(net.n_leaves):
            bumped = x.clone()
            bumped[:, leaf] += 1
            for level, (pre, pre0) in enumerate(zip(net.forward_cache(bumped, open_gates)[0], base)):
                moved = (pre - pre0).abs() > tol.atol + tol.rtol * pre0.abs()
                seen[level][:, leaf] = moved.any(-1).any(0)
    wrong = []
    for level in range(net.depth):
        for j in range(net.branching ** level):
            expected = list(subtree_leaves(net.depth, net.branching, level, j))
            actual = seen[level][j].nonzero().flatten().tolist()
            if actual != expected:
                wrong.append(f"level {level} group {j} sees leaves {actual}, its subtree is {expected}")
    if wrong:
        text = f"tree wiring [{net.extra_repr()}, {context}]: {len(wrong)} groups mis-wired; " + "; ".join(wrong[:4])
        fail("tree wiring", text, limit=tol, allowed="every group sees exactly its subtree's leaves",
             figure=float(len(wrong)), context=context, where=wrong[0], text=text)


def joint_unit_correlations(net: TreeMirrorNet, model: HLTM) -> list:
    """The reference twin of the metric: corr(f_k, z_mu) for every group's pre-activations, computed on the
    brute-force joint of all latents with p(config) weights (no posterior, no assumed Var z), (n_l, hid) per level."""
    configs, probs = model.joint_table()
    p = next(net.parameters())
    with torch.no_grad():
        pres = net.pre_activations(configs[:, -model.n_leaves:].to(p.dtype))
    out = []
    for level, pre in enumerate(pres):
        f, z = pre.double(), _level_nodes(model, configs, level).double()[:, :, None]
        f_c = f - torch.einsum("s,sgk->gk", probs, f)
        z_c = z - torch.einsum("s,sgk->gk", probs, z)
        cov = torch.einsum("s,sgk->gk", probs, f_c * z_c)
        sd = (torch.einsum("s,sgk->gk", probs, f_c ** 2) * torch.einsum("s,sgk->gk", probs, z_c ** 2)).sqrt()
        out.append(torch.where(sd > 0, cov / sd.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(sd)))
    return out


def check_feature_correlations(net: TreeMirrorNet, model: HLTM, *, context: str = "") -> None:
    """Evidence: the metric's unit correlations (``latent_recovery`` on the enumerated evaluation set, weighted
    by p(x)) equal corr(f_k, z_mu) computed on the brute-force joint, at every level."""
    __tracebackhide__ = True
    measured = latent_recovery(net, enumerate_leaves(model)).correlations
    for level, expected in enumerate(joint_unit_correlations(net, model)):
        assert_identity(measured[level], expected, what=f"corr(f_k, z_mu) at level {level}, metric vs brute-force joint",
                        context=f"{model.describe()}, {context}")


def check_ceilings(model: HLTM, data: EvalSet, *, context: str = "") -> None:
    """Evidence: at every level, the evaluation set's Bayes ceilings sqrt(Var E[z_mu|x] / Var z_mu) against
    the brute-force joint's, and the posterior mean attains its ceiling (corr(E[z|x], z) = ceiling)."""
    __tracebackhide__ = True
    _, p_x, posterior = brute_force_leaf_tables(model)
    ceilings = data.ceilings()
    where = f"{model.describe()}, {context}"
    for level in range(model.depth):
        post = _level_nodes(model, posterior, level)
        var_post = p_x @ (post - p_x @ post) ** 2
        var_z = (p_x @ post) * (1 - p_x @ post)            # z is a bit: Var z = P(z=1) P(z=0)
        assert_identity(ceilings[level], (var_post / var_z).sqrt(), context=where,
                        what=f"Bayes ceiling at level {level}, evaluation set vs brute-force joint")
        attained = unit_correlations(data.posterior[level][:, :, None], data.posterior[level], data.weights)[:, 0]
        assert_identity(attained, ceilings[level], what=f"corr(E[z|x], z) = ceiling at level {level}", context=where)


def root_selectivity(net: TreeMirrorNet, data: EvalSet, gates=None) -> torch.Tensor:
    """S = E[f | z0 = 1] - E[f | z0 = 0] for the root units (the output), (hid,)."""
    p = next(net.parameters())
    out = net(data.x.to(dtype=p.dtype, device=p.device), gates)
    return selectivity(out[:, None, :].cpu(), data.posterior[0], data.weights)[0]


def check_exact_operator(net: TreeMirrorNet, model: HLTM, *, alpha: float, context: str = "") -> None:
    """The covariance operator on the HLTM, every layer, by enumeration in float64 (docs/THEORY.md §6, §8).

    Evidence (two independent routes each): OP (operator_dense on p(x | z0) from belief propagation)
    = 1/4 Delta Delta^T with Delta = Kbar(z0=1) - Kbar(z0=0) built from the brute-force joint's p(x | z0);
    Delta^T w = S, the root units' selectivity from the belief-propagation posteriors; one step
    w <- w + alpha 2 OP w with the structured product and gating frozen gives S' = (I + alpha/2 G) S,
    G = Delta^T Delta (power iteration on the selectivity); at the top layer G = ||d||^2 I.
    Sanity only (true by construction once the above hold): OP symmetric, PSD, rank <= n_L,
    w^T OP w = ||S||^2 / 4, non-zero spectrum of OP = spectrum of G / 4.
    """
    __tracebackhide__ = True
    data = enumerate_leaves(model)
    aug = data.augmented_data(dtype=torch.float64)
    p_joint = brute_force_leaf_tables(model)[0]
    gates = net.gates(data.x)
    s = root_selectivity(net, data).detach()
    for name in net.layer_names():
        where = f"layer {name} (level {net.level_of(name)}), {context}"
        w = dict(net.named_parameters())[name]
        op = operator_dense(net, name, aug).detach()
        k = connection_dense(net, data.x, name).detach()                  # (X, P, n_L)
        delta = torch.einsum("x,xpo->po", p_joint[1] - p_joint[0], k)      # Kbar(z0=1) - Kbar(z0=0), joint route
        flat = w.detach().flatten()
        assert_identity(op, delta @ delta.T / 4, what="OP = V_z0[Kbar] = 1/4 Delta Delta^T (Delta from the joint)",
                        context=where)
        assert_identity(delta.T @ flat, s, what="Delta^T w = E[f|z0=1] - E[f|z0=0]", context=where)
        # sanity assertions: hold by construction once the identities above do
        assert_identity(op, op.T, what="sanity: OP symmetric", context=where)
        eig = assert_psd(op, what="sanity: OP", context=where)
        rank = numerical_rank(eig)
        if rank > net.hid:
            fail("sanity: rank(OP) <= n_L", f"rank(OP) = {rank} > n_L = {net.hid}", limit=EXACT_RANK_EXCESS,
                 allowed=f"rank <= {net.hid}", figure=float(rank - net.hid), context=context, where=f"layer {name}",
                 text=f"sanity: rank(OP) = {rank} > n_L = {net.hid} [{where}]")
        assert_identity(flat @ op @ flat, s.dot(s) / 4, what="sanity: w^T OP w = ||S||^2/4", context=where)
        gram = delta.T @ delta
        assert_identity(symmetric_eigenvalues(gram) / 4, eig[-net.hid:], kind="eigenvalue",
                        what="sanity: non-zero spectrum of OP = spectrum of G / 4", context=where)
        # evidence: the structured product moves the selectivity as the dense Delta says
        step = 2 * alpha * operator_times(net, name, aug).detach()
        saved = w.detach().clone()
        with torch.no_grad():
            w.add_(step.reshape(w.shape))
            try:
                s_new = root_selectivity(net, data, gates)
            finally:
                w.copy_(saved)
        assert_identity(s_new, s + alpha / 2 * gram @ s, what="frozen-gating step: S' = (I + alpha/2 G) S",
                        context=where)
        if net.level_of(name) == 0:
            factor = 1 + alpha / 2 * float(gram.trace()) / net.hid
            assert_identity(s_new, factor * s, what="top layer: every root unit's selectivity times 1 + alpha/2 ||d||^2",
                            context=where)
