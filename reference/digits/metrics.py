"""Label-based evaluation of label-free training on digits: kNN, few-shot linear probe, unit variances.

Features are read at every layer of a ``BiasFreeMLP``: the input pixels, each hidden layer after psi, and
the (linear) output. ``unit_variances`` measures, per hidden unit, the across-sample variance of its
augmentation-averaged activation against its within-sample (augmentation) variance: the selectivity that
survives augmentation, which the covariance operator V[Kbar] amplifies (docs/THEORY.md §6).
"""
from __future__ import annotations

import statistics

import torch

from dualnet_ssl.distributions import DiscreteAugmentedData
from dualnet_ssl.errors import BadInput
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.seeding import make_generator


def layer_names_of(net: BiasFreeMLP) -> list[str]:
    """'input', 'hidden 1', ..., 'output': the layers at which features are read."""
    return ["input"] + [f"hidden {l}" for l in range(1, len(net.weights))] + ["output"]


@torch.no_grad()
def layer_features(net: BiasFreeMLP, x: torch.Tensor) -> list[torch.Tensor]:
    """f_0 = x, f_1, ..., f_{L-1} (after psi) and f_L, each (batch, n_l), in ``layer_names_of`` order."""
    inputs, pres, gates = net.forward_cache(x)
    hidden = [d * p for d, p in zip(gates, pres[:-1])]
    return [x] + hidden + [pres[-1]]


def knn_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                 k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour vote under cosine similarity (ties go to the smallest label)."""
    if train.shape[0] < k:
        raise BadInput(f"kNN needs at least k={k} training points, got {train.shape[0]}")
    a = torch.nn.functional.normalize(train.double(), dim=1)
    b = torch.nn.functional.normalize(test.double(), dim=1)
    nearest = (b @ a.T).topk(k, dim=1).indices
    votes = torch.nn.functional.one_hot(train_labels[nearest], int(train_labels.max()) + 1).sum(1)
    return float((votes.argmax(1) == test_labels).double().mean())


def few_shot_probe(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                   *, shots: int, draws: int, seed: int) -> float:
    """Mean test accuracy over ``draws`` logistic-regression probes, each fit on ``shots`` labels per class.

    Features are standardised with the mean and sd of all training features (no labels used for that).
    """
    from sklearn.linear_model import LogisticRegression

    mean, sd = train.double().mean(0), train.double().std(0).clamp_min(1e-12)
    train_std = ((train.double() - mean) / sd).numpy()
    test_std = ((test.double() - mean) / sd).numpy()
    generator = make_generator(seed)
    classes = torch.unique(train_labels)
    accuracies = []
    for _ in range(draws):
        picks = []
        for c in classes:
            members = torch.nonzero(train_labels == c).flatten()
            if len(members) < shots:
                raise BadInput(f"class {int(c)} has {len(members)} training points, fewer than {shots} shots")
            picks.append(members[torch.randperm(len(members), generator=generator)[:shots]])
        chosen = torch.cat(picks)
        probe = LogisticRegression(max_iter=2000).fit(train_std[chosen.numpy()], train_labels[chosen].numpy())
        accuracies.append(float((probe.predict(test_std) == test_labels.numpy()).mean()))
    return statistics.mean(accuracies)


@torch.no_grad()
def unit_variances(net: BiasFreeMLP, data: DiscreteAugmentedData) -> list[dict]:
    """Per hidden layer: the median over live units of across-sample / within-sample variance, and the share
    of total unit variance that is across samples (sum over units of across / (across + within))."""
    n, m = data.aug_probs.shape
    summaries = []
    for h in layer_features(net, data.flat_views())[1:-1]:
        h = h.double().reshape(n, m, -1)
        q = data.aug_probs.double()[:, :, None]
        p = data.sample_probs.double()[:, None]
        mean = (q * h).sum(1)                                           # (N, units): augmentation mean
        within = (p * (q * (h - mean[:, None]) ** 2).sum(1)).sum(0)     # E_x V_aug
        across = (p * (mean - (p * mean).sum(0)) ** 2).sum(0)          # V_x E_aug
        live = (h != 0).flatten(0, 1).any(0)                            # units that fire on some view
        ratios = (across[live] / within[live].clamp_min(torch.finfo(torch.float64).tiny)).tolist()
        summaries.append({"median_ratio": statistics.median(ratios) if ratios else float("nan"),
                          "across_share": float(across.sum() / (across.sum() + within.sum()).clamp_min(1e-300)),
                          "live_units": int(live.sum())})
    return summaries
