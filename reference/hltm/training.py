"""HLTM training (docs/THEORY.md §8, "Official code's run"): the run specification and a vmapped
ensemble of SGD runs on fresh pairs, on any device."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch.func import functional_call, stack_module_state, vmap

from dualnet_ssl.errors import BadInput
from dualnet_ssl.hltm.metrics import LatentRecovery, latent_recovery
from dualnet_ssl.hltm.model import HLTM, EvalSet, eval_set, make_hltm
from dualnet_ssl.losses import infonce_loss, pair_distance
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.runtime import one_intra_op_thread
from dualnet_ssl.seeding import derive_seed, make_generator


@dataclass(frozen=True)
class TrainSpec:
    """One HLTM training run (defaults: docs/THEORY.md §8 at depth 3, InfoNCE in the -log form, H = 1)."""

    depth: int = 3
    branching: int = 2
    delta_lower: float = 0.8
    delta_upper: float = 1.0
    hid: int = 10
    steps: int = 2000
    batch: int = 128
    lr: float = 0.1
    tau: float = 0.1
    loss: str = "infonce"          # "infonce" (-tau log softmax) or "official" (-softmax of batch MSEs, the authors')
    share_root: bool = True        # False: the positive's root is independent (pure noise)
    eps: float = 1e-4              # f / (||f|| + eps), as the official code
    bias: bool = False             # True: the authors' network (biases, nn.Linear's initialisation), BiasedTreeNet
    seed: int = 0
    dtype: torch.dtype = torch.float32

    def describe(self) -> str:
        extra = ("" if self.share_root else ", share_root=False") + (", bias=True" if self.bias else "")
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


class BiasedTreeNet(TreeMirrorNet):
    """The authors' HLTM network (ssl/hltm/simCLR_hltm.py of facebookresearch/luckmatters): every group is an
    ``nn.Linear`` with a bias, initialised as torch does (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    Outside the theorems' class (not homogeneous); used only for training as the authors ran it."""

    def __init__(self, depth: int, branching: int, hid: int, *, seed: int, dtype=torch.float64, device="cpu"):
        super().__init__(depth, branching, hid, seed=seed, dtype=dtype, device=device)
        g = make_generator(derive_seed(seed, "linear init"))
        biases = []
        with torch.no_grad():
            for w in self.weights:
                bound = w.shape[-1] ** -0.5
                w.copy_((torch.rand(w.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
                b = (torch.rand(w.shape[:2], generator=g, dtype=torch.float64) * 2 - 1) * bound
                biases.append(torch.nn.Parameter(b.to(dtype=dtype, device=device)))
        self.biases = torch.nn.ParameterList(biases)

    def forward_cache(self, x, gates=None):
        if x.dim() != 2 or x.shape[1] != self.n_leaves:
            raise BadInput(f"TreeMirrorNet expects inputs of shape (batch, {self.n_leaves}), got {tuple(x.shape)}")
        pres, used = [None] * self.depth, [None] * self.depth
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            level = self.depth - 1 - i
            pre = torch.einsum("bgi,goi->bgo", h.reshape(x.shape[0], w.shape[0], w.shape[2]), w) + b
            pres[level] = pre
            if level > 0:
                d = gates[level] if gates is not None else (pre > 0).to(pre.dtype)
                used[level] = d
                h = d * pre
        return pres, used


def network(spec: TrainSpec) -> TreeMirrorNet:
    """The run's network as initialised: bias-free (the suite's) or the authors' (``spec.bias``)."""
    kind = BiasedTreeNet if spec.bias else TreeMirrorNet
    return kind(spec.depth, spec.branching, spec.hid, seed=derive_seed(spec.seed, "net"), dtype=spec.dtype)


def build(spec: TrainSpec):
    """(model, net, evaluation set) of a run; every random choice follows from ``spec.seed``."""
    model = make_hltm(spec.depth, spec.branching, spec.delta_lower, spec.delta_upper,
                      seed=derive_seed(spec.seed, "tree"))
    return model, network(spec), eval_set(model, seed=derive_seed(spec.seed, "eval"))


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


def train(spec: TrainSpec, progress=None, device="cpu") -> TrainResult:
    """One run: ``train_many([spec])``."""
    return train_many([spec], progress, device)[0]


def train_many(specs: list, progress=None, device="cpu") -> list:
    """Train several runs at once as one vmapped ensemble (same result as one by one, several times faster).

    SGD on fresh pairs each step, one data stream per run. The metric is taken before and after
    (exactly, by enumeration, when c^L <= 16). ``progress(n)`` is called after every n steps.
    Initial weights and pairs are drawn on the CPU (the same on every device); the SGD steps run on
    ``device``; the returned networks live on the CPU.
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
    params = {k: v.detach().to(device).requires_grad_() for k, v in stack_module_state(nets)[0].items()}
    template = copy.deepcopy(nets[0]).to("meta")
    forward = vmap(lambda p, x: functional_call(template, p, (x,)))
    generators = [make_generator(derive_seed(s.seed, "data")) for s in specs]
    with one_intra_op_thread():
        chunk = 250
        for first in range(0, spec.steps, chunk):
            n_steps = min(chunk, spec.steps - first)
            drawn = [model.sample_pairs(n_steps * spec.batch, g, share_root=s.share_root, dtype=spec.dtype)[:3]
                     for s, (model, _, _), g in zip(specs, built, generators)]
            anchor, positive, negative = (torch.stack(views).to(device) for views in zip(*drawn))  # (runs, rows, leaves)
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
        net.load_state_dict({k: v[i].detach().cpu() for k, v in params.items()})
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise BadInput(f"training diverged (non-finite weights): {s.describe()}")
        results.append(TrainResult(s, model, net, data, initial[i], latent_recovery(net, data), initial_states[i],
                                   seconds / len(specs)))
    return results



def initial_net(result: TrainResult) -> TreeMirrorNet:
    """The run's network as it was before training."""
    net = network(result.spec)
    net.load_state_dict(result.initial_state)
    return net

