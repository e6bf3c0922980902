"""A real projection head against the theorems' class (docs/THEORY.md §1; docs/REGRESSION.md, "Your network").

Real heads carry biases and BatchNorm, so the theorems do not apply to them as they stand. Two things are
offered instead: ``class_distance`` measures how far the network is from the class (the share of f_L that
K_l^T w_l does not explain, layer by layer), and ``bias_free_twin`` builds the same layers with every bias off
and every normalisation and dropout removed, on which the theorem checks run.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from dualnet_ssl.connection import connection_transpose_times
from dualnet_ssl.errors import NotApplicable
from dualnet_ssl.networks import _NON_HOMOGENEOUS_MODULES

TWIN_DESCRIPTION = "its bias-free twin (same layers and weights, every bias off, BatchNorm/LayerNorm/Dropout removed)"


def weight_layers(net: nn.Module) -> list[str]:
    """The matrix- or kernel-shaped parameters: the W_l of the theorems (biases and norm scales left out)."""
    return [name for name, p in net.named_parameters() if p.ndim >= 2]


def class_distance(net: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Per weight layer, ||f_L(x) - K_l(x)^T w_l|| / ||f_L(x)||: 0 in the class (Euler's theorem, docs/THEORY.md §1); the
    share of the output that biases and normalisation put outside the covariance form of that layer."""
    net = copy.deepcopy(net).eval()     # BatchNorm with its running statistics: a function of each input alone
    with torch.no_grad():
        out = net(x)
    scale = float(out.norm())
    if scale == 0:
        raise NotApplicable("the network's output is zero on the probe inputs")
    distance = {}
    for name in weight_layers(net):
        w = dict(net.named_parameters())[name].detach()
        explained = connection_transpose_times(net, x, name, w.flatten())
        distance[name] = float((out - explained).detach().norm()) / scale
    return distance


def bias_free_twin(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every bias removed and every normalisation or dropout module replaced by identity."""
    twin = copy.deepcopy(net)
    for module in list(twin.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, _NON_HOMOGENEOUS_MODULES):
                setattr(module, child_name, nn.Identity())
        if isinstance(getattr(module, "bias", None), nn.Parameter):
            module.bias = None
    return twin


def distance_summary(distance: dict[str, float]) -> str:
    worst = max(distance, key=distance.get)
    return (f"{distance[worst]:.1%} of f_L is not K_l^T w_l at layer '{worst}' (worst of {len(distance)}; "
            "0% in the theorems' class)")
