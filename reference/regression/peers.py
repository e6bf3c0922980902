"""Ready declarations of real peer losses (the optional extra "peers"); each imports its package lazily.
"""
from __future__ import annotations

import importlib

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.declarations import LossAdapter, per_anchor, two_view

PEERS_HINT = "install the peers with pip install -e '.[peers]'"

LIGHTLY_HINT = ("lightly is not in the peers extra: its install brings torchvision and a CUDA build of torch "
                "that replaces this one (docs/REGRESSION.md); pip install lightly in an environment where that fits")

def _import_peer(module: str, hint: str = PEERS_HINT):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BadInput(f"peer package '{module}' is not importable ({err}); {hint}") from None

def pml_ntxent(temperature: float = 0.07, symmetric: bool = True) -> LossAdapter:
    """pytorch-metric-learning: ``SelfSupervisedLoss(NTXentLoss(temperature), symmetric)`` (cosine, mean)."""
    losses = _import_peer("pytorch_metric_learning.losses")
    fn = losses.SelfSupervisedLoss(losses.NTXentLoss(temperature=temperature), symmetric=symmetric)
    return two_view(fn, symmetric=symmetric, same_view_negatives=symmetric, normalises=True, reference="infonce",
                    temperature=temperature, temperature_kwarg="temperature",
                    name=f"pytorch-metric-learning NTXentLoss(temperature={temperature:g}, symmetric={symmetric})")

def pml_triplet(margin: float = 0.05) -> LossAdapter:
    """pytorch-metric-learning: ``SelfSupervisedLoss(TripletMarginLoss(margin))``, default distance
    (Euclidean distance of unit rows, not its square); SimCLR layout, normalises."""
    losses = _import_peer("pytorch_metric_learning.losses")
    return two_view(losses.SelfSupervisedLoss(losses.TripletMarginLoss(margin=margin)), normalises=True,
                    name=f"pytorch-metric-learning TripletMarginLoss(margin={margin:g})")

def info_nce(temperature: float = 0.1, reduction: str = "mean", negatives: str | None = None,
             n_negatives: int = 4) -> LossAdapter:
    """info-nce-pytorch ``InfoNCE``: ``negatives=None`` is the two-view form ``loss(query, positive_key)``
    (other samples' keys are the negatives, one-directional); ``"unpaired"``/``"paired"`` is the per-anchor
    form with explicit negative keys."""
    module = _import_peer("info_nce")
    mode = "unpaired" if negatives is None else negatives
    fn = module.InfoNCE(temperature=temperature, reduction=reduction, negative_mode=mode)
    common = dict(reduction=reduction, normalises=True, reference="infonce", temperature=temperature,
                  temperature_kwarg="temperature",
                  name=f"info-nce-pytorch InfoNCE(temperature={temperature:g}, reduction={reduction}, "
                       f"negatives={negatives})")
    if negatives is None:
        return two_view(fn, symmetric=False, same_view_negatives=False, **common)
    return per_anchor(fn, negative_mode=mode, n_negatives=n_negatives, **common)

def lightly_ntxent(temperature: float = 0.5) -> LossAdapter:
    """lightly ``NTXentLoss(temperature)`` without memory bank: SimCLR layout (2N anchors, same-view negatives),
    cosine, mean. Declaration read from lightly 1.6.0's source; lightly is not part of the peers extra
    (docs/REGRESSION.md says why)."""
    loss = _import_peer("lightly.loss", LIGHTLY_HINT)
    return two_view(loss.NTXentLoss(temperature=temperature), normalises=True, reference="infonce",
                    temperature=temperature, temperature_kwarg="temperature",
                    name=f"lightly NTXentLoss(temperature={temperature:g})")
