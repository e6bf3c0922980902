"""The cases the benchmarks time (theorems/test_benchmarks.py), the correctness check each timed result passes, and
the peak-memory reading every benchmark takes (``peak_bytes``).

Structured 2 OP_l w and theta_l against the dense operator and one training step (docs/THEORY.md §6-7), on an
MLP [W, W, W, 8], layer ``weights.1``, 6 samples x 4 augmentations (sigma 0.3), float64. Fast but wrong is no good:
every timed result must equal the other path's (structured vs dense) or, for the training step, the exact E[L].
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from dualnet_ssl.compare import assert_identity, identity_passed
from dualnet_ssl.distributions import gaussian_augmented
from dualnet_ssl.losses import infonce, simple
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.operators import expected_loss_neg_gradient, operator_dense, operator_times, residue
from dualnet_ssl.results import CheckResult
from dualnet_ssl.training import expected_loss, gradient_step

N_OUT, LAYER = 8, "weights.1"
N_SAMPLES, N_AUGMENTATIONS, SIGMA = 6, 4, 0.3
DATA_SEED, NET_SEED = 0, 1
"""Fixed seeds: every path at one width sees the same network and data."""
LOSSES = {"theorem3": simple(), "theorem4": infonce(1.0)}
STEP_LR = 1e-3
"""Learning rate of the timed step; each round starts from the same weights, so its value does not matter."""


@lru_cache(maxsize=None)
def case(width: int, device_type: str):
    """(net, data, w, references): the inputs of one width and each quantity computed once for comparison."""
    data = gaussian_augmented(N_SAMPLES, N_AUGMENTATIONS, width, SIGMA, seed=DATA_SEED, device=device_type)
    net = BiasFreeMLP([width, width, width, N_OUT], seed=NET_SEED, device=device_type)
    w = dict(net.named_parameters())[LAYER].detach().flatten()
    neg_grad, enum = expected_loss_neg_gradient(net, LAYER, data, LOSSES["theorem4"])
    refs = {
        ("theorem3", "structured"): 2 * operator_times(net, LAYER, data),
        ("theorem3", "dense"): 2 * (operator_dense(net, LAYER, data) @ w),
        ("theorem4", "structured"): residue(net, LAYER, data, LOSSES["theorem4"]).theta.detach(),
        ("theorem4", "dense"): neg_grad - 2 * (operator_dense(net, LAYER, data, enum.pair_mass.detach()) @ w),
        **{(t, "train_step"): expected_loss(net, data, loss).detach() for t, loss in LOSSES.items()},
    }
    return net, data, w, refs


def check_against_reference(result, refs, theorem: str, path: str, *, context: str) -> CheckResult:
    """Fast but wrong is no good: a timed result must equal the other path's (structured vs dense), or, for the
    training step, the exact E[L]."""
    __tracebackhide__ = True
    if path == "train_step":
        expected = refs[(theorem, path)].cpu()
        what = "E[L] returned by the training step"
        rel = assert_identity(torch.as_tensor(result, dtype=torch.float64), expected, what=what, context=context)
    else:
        other = "dense" if path == "structured" else "structured"
        expected, what = refs[(theorem, other)], f"{path} vs {other}"
        rel = assert_identity(result, expected, what=what, context=context)
    return identity_passed(what, rel, expected.dtype, "exact", context)


def target(theorem: str, path: str, net, data, w):
    """The callable timed for one path; it takes the network (fresh from ``setup``) as its argument."""
    loss = LOSSES[theorem]
    if path == "train_step":
        return lambda n: gradient_step(n, data, loss, STEP_LR)
    if theorem == "theorem3":
        return {"structured": lambda n: 2 * operator_times(n, LAYER, data),
                "dense": lambda n: 2 * (operator_dense(n, LAYER, data) @ w)}[path]
    if path == "structured":
        return lambda n: residue(n, LAYER, data, loss).theta

    def dense_theta(n):
        neg_grad, enum = expected_loss_neg_gradient(n, LAYER, data, loss)
        return neg_grad - 2 * (operator_dense(n, LAYER, data, enum.pair_mass.detach()) @ w)
    return dense_theta


def peak_bytes(fn, device: torch.device) -> int:
    """Peak bytes the torch allocator holds during ``fn()`` beyond what it held at the start."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
    held = peak = 0
    for _, size in sorted(events):
        held += size
        peak = max(peak, held)
    return peak
