"""The connection K_l (docs/THEORY.md §2): structured products first, dense twins for small cases.

Row-major flattening ``w_l = W_l.flatten()``; ``K_l(x) = J_l(x)^T kron f_{l-1}(x)`` of shape
``(n_l n_{l-1}) x n_L``, so that ``f_L(x) = K_l(x)^T w_l`` and ``d f_L / d w_l = K_l(x)^T``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import jacrev, jvp
from torch.nn import functional as F

from dualnet_ssl.errors import BadInput
from dualnet_ssl.networks import BiasFreeConvNet, BiasFreeMLP, gate, output_with_layer


def _param(net: nn.Module, name: str) -> torch.Tensor:
    params = dict(net.named_parameters())
    if name not in params:
        raise BadInput(f"'{name}' is not a parameter of {type(net).__name__}; parameters: {list(params)}")
    return params[name]


def top_down_jacobians(net: BiasFreeMLP, x: torch.Tensor) -> list[torch.Tensor]:
    """J_l(x) = d f_L / d f~_l for l = 1..L, each (batch, n_L, n_l), by J_L = I, J_l = J_{l+1} W_{l+1} D_l."""
    _, pres, gates = net.forward_cache(x)
    n_out = pres[-1].shape[1]
    jac = torch.eye(n_out, dtype=x.dtype, device=x.device).expand(x.shape[0], n_out, n_out)
    jacobians = [jac]
    for l in range(len(net.weights) - 2, -1, -1):
        jac = (jac @ net.weights[l + 1]) * gates[l][:, None, :]
        jacobians.append(jac)
    return jacobians[::-1]


def connection_kron(net: BiasFreeMLP, x: torch.Tensor, layer: int) -> torch.Tensor:
    """Dense K_l(x) = kron(J_l^T, f_{l-1}) from the closed-form Jacobian, (batch, n_l n_{l-1}, n_L). MLP only."""
    inputs, _, _ = net.forward_cache(x)
    jac = top_down_jacobians(net, x)[layer]            # (B, n_L, n_l)
    f_prev = inputs[layer]                              # (B, n_{l-1})
    batch, n_out, n_l = jac.shape
    return torch.einsum("boi,bj->bijo", jac, f_prev).reshape(batch, n_l * f_prev.shape[1], n_out)


def conv_top_down_jacobians(net: BiasFreeConvNet, x: torch.Tensor):
    """Closed form, no autograd: for each conv layer l, (f_{l-1}, J_l) with J_l = d f_L / d f~_l of shape
    (B, n_L, C_l, S_l, S_l); and the head's input. Backward by hand: the head's rows, max-unpooling to the
    argmax, the gate D_l, and the adjoint of each convolution (``conv_transpose2d``)."""
    pad, inputs, pres, picks = net.kernel // 2, [], [], []
    h = x
    for w in net.convs:
        inputs.append(h)
        pres.append(F.conv2d(h, w, padding=pad))
        h, idx = F.max_pool2d(gate(pres[-1], net.negative_slope) * pres[-1], 2, return_indices=True)
        picks.append(idx)
    batch, n_out = x.shape[0], net.head.shape[0]
    jac = net.head.reshape(1, n_out, *h.shape[1:]).expand(batch, -1, -1, -1, -1)      # d f_L / d h
    jacobians = [None] * len(net.convs)
    for l in range(len(net.convs) - 1, -1, -1):
        pre, idx = pres[l], picks[l]
        flat_jac = jac.reshape(batch * n_out, *jac.shape[2:])
        flat_idx = idx[:, None].expand(batch, n_out, *idx.shape[1:]).reshape(flat_jac.shape)
        unpooled = F.max_unpool2d(flat_jac, flat_idx, 2, output_size=pre.shape[-2:])
        jacobians[l] = unpooled.reshape(batch, n_out, *pre.shape[1:]) * gate(pre, net.negative_slope)[:, None]
        flat = jacobians[l].reshape(batch * n_out, *pre.shape[1:])
        jac = F.conv_transpose2d(flat, net.convs[l], padding=pad).reshape(batch, n_out, *inputs[l].shape[1:])
    return list(zip(inputs, jacobians)), h.flatten(1)


def connection_conv(net: BiasFreeConvNet, x: torch.Tensor, name: str) -> torch.Tensor:
    """Dense K_l(x) of the conv net in closed form, (batch, numel(W_l), n_L): for a conv layer
    K_l = sum over positions of (im2col patches of f_{l-1}) kron J_l^T; for the head, I kron f_{L-1}."""
    layers, head_input = conv_top_down_jacobians(net, x)
    n_out = net.head.shape[0]
    if name == "head":
        eye = torch.eye(n_out, dtype=x.dtype, device=x.device)
        return torch.einsum("oa,bq->boqa", eye, head_input).reshape(x.shape[0], -1, n_out)
    f_prev, jac = layers[net.layer_names().index(name)]
    patches = F.unfold(f_prev, net.kernel, padding=net.kernel // 2)         # (B, C_in k k, S S)
    jac = jac.reshape(*jac.shape[:3], -1)                                    # (B, n_L, C_out, S S)
    return torch.einsum("bocs,bqs->bcqo", jac, patches).reshape(x.shape[0], -1, n_out)


def connection_autograd(net: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """Dense K_l(x) = (d f_L / d w_l)^T by autograd, (batch, numel(W_l), n_L). Any network; small cases only."""
    w = _param(net, name).detach()
    jac = jacrev(lambda weight: output_with_layer(net, name, weight, x))(w)   # (B, n_L, *W.shape)
    return jac.reshape(jac.shape[0], jac.shape[1], -1).transpose(1, 2)


def connection_dense(net: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """Dense K_l(x): closed form for ``BiasFreeMLP`` (Kronecker) and ``BiasFreeConvNet`` (im2col), so that
    Theorem 1 on them is closed form vs. autograd; autograd for any other network (a homogeneity check only)."""
    if isinstance(net, BiasFreeMLP):
        return connection_kron(net, x, net.layer_names().index(name))
    if isinstance(net, BiasFreeConvNet):
        _param(net, name)
        return connection_conv(net, x, name)
    return connection_autograd(net, x, name)


def connection_times(net: nn.Module, x: torch.Tensor, name: str, cotangent: torch.Tensor) -> torch.Tensor:
    """sum_b K_l(x_b) u_b as a flat vector, by one vector-Jacobian product (no K formed)."""
    w = _param(net, name)
    out = net(x)
    if cotangent.shape != out.shape:
        raise BadInput(f"cotangent shape {tuple(cotangent.shape)} != output shape {tuple(out.shape)}")
    (grad,) = torch.autograd.grad(out, w, grad_outputs=cotangent.to(out.dtype))
    return grad.flatten()


def connection_transpose_times(net: nn.Module, x: torch.Tensor, name: str, vector: torch.Tensor) -> torch.Tensor:
    """K_l(x)^T u for a flat vector u, by one Jacobian-vector product, (batch, n_L).

    With u = w_l this is f_L(x) exactly when the network is homogeneous in W_l (docs/THEORY.md §2).
    """
    w = _param(net, name).detach()
    if vector.numel() != w.numel():
        raise BadInput(f"vector has {vector.numel()} entries, layer '{name}' has {w.numel()}")
    _, tangent_out = jvp(lambda weight: output_with_layer(net, name, weight, x), (w,), (vector.reshape(w.shape),))
    return tangent_out
