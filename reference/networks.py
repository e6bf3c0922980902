"""Bias-free layered networks (docs/THEORY.md §1), built from a spec and a seed, and the class check.

A network here is any ``nn.Module`` whose *layers* are weight parameters ``W_l`` such that the
output is positively homogeneous of degree 1 in each ``W_l`` (Euler): ``f_L(c W_l) = c f_L(W_l)``.
``layer_names(net)`` lists those parameters in input-to-output order.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from dualnet_ssl.errors import BadInput, NotApplicable
from dualnet_ssl.seeding import make_generator


def _he_normal(shape: Sequence[int], fan_in: int, generator: torch.Generator, dtype, device) -> nn.Parameter:
    w = torch.randn(*shape, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / fan_in)
    return nn.Parameter(w.to(dtype=dtype, device=device))


def gate(pre: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """psi'(pre) for leaky ReLU with the given slope (0: ReLU, 1: identity); psi'(0) = slope, as autograd."""
    one = torch.ones((), dtype=pre.dtype, device=pre.device)
    return torch.where(pre > 0, one, one * negative_slope)


class BiasFreeMLP(nn.Module):
    """f~_l = W_l f_{l-1}, f_l = psi(f~_l) for l < L, f_L = f~_L (docs/THEORY.md §1).

    ``widths = [n_0, n_1, ..., n_L]``. psi is leaky ReLU with ``negative_slope`` (0 = ReLU),
    written as psi(u) = psi'(u) u so that gating can be frozen by passing ``gates``.
    """

    def __init__(self, widths: Sequence[int], *, seed: int, negative_slope: float = 0.0,
                 dtype=torch.float64, device="cpu"):
        super().__init__()
        if len(widths) < 2 or any(int(n) < 1 for n in widths):
            raise BadInput(f"widths must list >= 2 positive sizes [n_0, ..., n_L], got {list(widths)}")
        self.widths = [int(n) for n in widths]
        self.negative_slope = float(negative_slope)
        g = make_generator(seed)
        self.weights = nn.ParameterList(
            [_he_normal((n_out, n_in), n_in, g, dtype, device) for n_in, n_out in zip(self.widths, self.widths[1:])])

    def layer_names(self) -> list[str]:
        return [f"weights.{i}" for i in range(len(self.weights))]

    def forward_cache(self, x: torch.Tensor, gates: Sequence[torch.Tensor] | None = None):
        """Return (layer inputs f_{l-1}, pre-activations f~_l, gates D_l) for every layer l = 1..L."""
        if x.dim() != 2 or x.shape[1] != self.widths[0]:
            raise BadInput(f"BiasFreeMLP expects inputs of shape (batch, {self.widths[0]}), got {tuple(x.shape)}")
        inputs, pres, used_gates = [], [], []
        h = x
        last = len(self.weights) - 1
        for l, w in enumerate(self.weights):
            inputs.append(h)
            pre = h @ w.T
            pres.append(pre)
            if l < last:
                d = gates[l] if gates is not None else gate(pre, self.negative_slope)
                used_gates.append(d)
                h = d * pre
        return inputs, pres, used_gates

    def gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The gating D_l(x) = psi'(f~_l) of every hidden layer, detached."""
        with torch.no_grad():
            return [d.detach() for d in self.forward_cache(x)[2]]

    def forward(self, x: torch.Tensor, gates: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        return self.forward_cache(x, gates)[1][-1]

    def extra_repr(self) -> str:
        return f"widths={self.widths}, negative_slope={self.negative_slope}"


class BiasFreeConvNet(nn.Module):
    """conv(3x3, bias-free) -> psi -> max-pool(2) -> ... -> flatten -> linear head (docs/THEORY.md §1).

    Every operation but the weights is positively homogeneous and piecewise linear, so the
    theorems apply. Inputs have shape (batch, in_channels, size, size).
    """

    def __init__(self, in_channels: int, size: int, channels: Sequence[int], n_out: int, *, seed: int,
                 negative_slope: float = 0.0, kernel: int = 3, dtype=torch.float64, device="cpu"):
        super().__init__()
        self.in_channels, self.size, self.kernel = int(in_channels), int(size), int(kernel)
        self.negative_slope = float(negative_slope)
        g = make_generator(seed)
        convs, c_in, s = [], self.in_channels, self.size
        for c_out in channels:
            convs.append(_he_normal((c_out, c_in, kernel, kernel), c_in * kernel * kernel, g, dtype, device))
            c_in, s = c_out, s // 2
        if s < 1:
            raise BadInput(f"image size {size} is too small for {len(channels)} conv+pool stages")
        self.convs = nn.ParameterList(convs)
        self.head = _he_normal((n_out, c_in * s * s), c_in * s * s, g, dtype, device)

    def layer_names(self) -> list[str]:
        return [f"convs.{i}" for i in range(len(self.convs))] + ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, self.size, self.size):
            raise BadInput(f"BiasFreeConvNet expects (batch, {self.in_channels}, {self.size}, {self.size}), "
                           f"got {tuple(x.shape)}")
        h = x
        for w in self.convs:
            pre = nn.functional.conv2d(h, w, padding=self.kernel // 2)
            h = nn.functional.max_pool2d(gate(pre, self.negative_slope) * pre, 2)
        return h.flatten(1) @ self.head.T


def layer_names(net: nn.Module) -> list[str]:
    """The weight parameters W_l in input-to-output order: ``net.layer_names()`` if defined, else all parameters."""
    if hasattr(net, "layer_names"):
        return list(net.layer_names())
    return [name for name, _ in net.named_parameters()]


def output_with_layer(net: nn.Module, name: str, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """f_L(x) with the parameter ``name`` replaced by ``weight`` (others unchanged)."""
    return functional_call(net, {name: weight}, (x,), strict=False)


_NON_HOMOGENEOUS_MODULES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.Dropout)


def check_theorem_class(net: nn.Module, x: torch.Tensor, *, scales=(2.0, 0.5)) -> None:
    """Raise ``NotApplicable`` unless ``net`` is in the theorems' class (docs/THEORY.md §1).

    Structural screen first (biases, normalisation, dropout, training-mode randomness), then the
    numerical Euler test: ``f_L(c W_l) = c f_L(W_l)`` for every layer and c in ``scales``
    (powers of two, so the scaling itself is exact in floating point).
    """
    from dualnet_ssl.tolerances import tolerance  # local: keeps module import light

    for mod_name, module in net.named_modules():
        if isinstance(module, _NON_HOMOGENEOUS_MODULES):
            raise NotApplicable(f"module '{mod_name}' is {type(module).__name__}: normalisation/dropout makes the "
                                "output not positively homogeneous in each layer's weights (docs/THEORY.md §1)")
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.requires_grad and bool((bias != 0).any()):
            raise NotApplicable(f"module '{mod_name}' ({type(module).__name__}) has a non-zero bias: biases break "
                                "f_L = K_l^T w_l; carry them as a constant-1 input channel instead (docs/THEORY.md §1)")
    names = layer_names(net)
    params = dict(net.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise BadInput(f"layer names {missing} are not parameters of {type(net).__name__}")
    with torch.no_grad():
        base = net(x)
        if not torch.isfinite(base).all():
            raise BadInput(f"{type(net).__name__} produced non-finite outputs on the probe input")
        tol = tolerance(base.dtype, "exact")
        for name in names:
            w = params[name]
            for c in scales:
                scaled = output_with_layer(net, name, c * w, x)
                err = float((scaled - c * base).abs().max())
                allowed = tol.atol + tol.rtol * float(c * base.abs().max())
                if not err <= allowed:
                    raise NotApplicable(
                        f"output is not positively homogeneous in layer '{name}': max |f(c W) - c f(W)| = {err:.3e} "
                        f"at c={c} (allowed {allowed:.1e}); the network has a bias, a skip/residual connection or "
                        f"another non-homogeneous operation, so f_L = K_l^T w_l fails (docs/THEORY.md §1)")


class TreeMirrorNet(nn.Module):
    """Bias-free network mirroring a complete c-ary tree of depth L (docs/THEORY.md §8).

    Each non-leaf latent at level l (root = level 0) owns a group of ``hid`` units. The groups at
    level L-1 read their c leaf bits; a group higher up reads the psi-outputs of its c children's
    groups (c * hid inputs). The output is the root group's pre-activation, (batch, hid); the
    L2 normalisation of the official code belongs to the loss, so the network stays homogeneous.

    One parameter per level, ``weights.i`` of shape (c^l, hid, fan_in) with l = L-1-i (input to
    output), applied group-wise with einsum: each parameter enters linearly, so the output is
    positively homogeneous of degree 1 in it and the connection/operator machinery applies.
    Inputs have shape (batch, c^L), leaves in level order (children of a node are contiguous).
    """

    def __init__(self, depth: int, branching: int, hid: int, *, seed: int, negative_slope: float = 0.0,
                 dtype=torch.float64, device="cpu"):
        super().__init__()
        if int(depth) < 1 or int(branching) < 2 or int(hid) < 1:
            raise BadInput(f"TreeMirrorNet needs depth >= 1, branching >= 2, hid >= 1; "
                           f"got depth={depth}, branching={branching}, hid={hid}")
        self.depth, self.branching, self.hid = int(depth), int(branching), int(hid)
        self.negative_slope = float(negative_slope)
        g = make_generator(seed)
        weights = []
        for level in range(self.depth - 1, -1, -1):
            fan_in = self.branching * (1 if level == self.depth - 1 else self.hid)
            weights.append(_he_normal((self.branching ** level, self.hid, fan_in), fan_in, g, dtype, device))
        self.weights = nn.ParameterList(weights)

    @property
    def n_leaves(self) -> int:
        return self.branching ** self.depth

    def layer_names(self) -> list[str]:
        return [f"weights.{i}" for i in range(len(self.weights))]

    def level_of(self, name: str) -> int:
        """The tree level whose groups the parameter ``name`` feeds (``weights.i`` -> L-1-i)."""
        return self.depth - 1 - self.layer_names().index(name)

    def forward_cache(self, x: torch.Tensor, gates: Sequence[torch.Tensor] | None = None):
        """(pre-activations, gates), both listed by level 0..L-1; pre-activations are (batch, c^l, hid).

        ``gates`` (listed by level, as returned) freezes psi' at the given values; the root has none.
        """
        if x.dim() != 2 or x.shape[1] != self.n_leaves:
            raise BadInput(f"TreeMirrorNet expects inputs of shape (batch, {self.n_leaves}), got {tuple(x.shape)}")
        pres, used = [None] * self.depth, [None] * self.depth
        h = x
        for i in range(len(self.weights)):
            level = self.depth - 1 - i
            pre = self.group_pre_activation(i, h)
            pres[level] = pre
            if level > 0:
                d = gates[level] if gates is not None else self.level_gate(level, pre)
                used[level] = d
                h = d * pre
        return pres, used

    def group_pre_activation(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """The pre-activations (batch, groups, hid) of weight layer ``i`` (counted from the leaves) on input ``h``;
        a subclass adds what its groups add (a bias)."""
        w = self.weights[i]
        return torch.einsum("bgi,goi->bgo", h.reshape(h.shape[0], w.shape[0], w.shape[2]), w)

    def level_gate(self, level: int, pre: torch.Tensor) -> torch.Tensor:
        """psi'(pre) at ``level`` (1..L-1) when no gates are given; a subclass may fix some levels' gates."""
        return gate(pre, self.negative_slope)

    def pre_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """f~ of every group, listed by level 0..L-1, each (batch, c^l, hid)."""
        return self.forward_cache(x)[0]

    def gates(self, x: torch.Tensor) -> list:
        """psi'(f~) by level (None at the root), detached: pass to ``forward`` to freeze gating."""
        with torch.no_grad():
            return [None if d is None else d.detach() for d in self.forward_cache(x)[1]]

    def forward(self, x: torch.Tensor, gates: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        return self.forward_cache(x, gates)[0][0][:, 0, :]

    def extra_repr(self) -> str:
        return (f"depth={self.depth}, branching={self.branching}, hid={self.hid}, "
                f"negative_slope={self.negative_slope}")
