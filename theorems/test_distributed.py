"""Gathered losses on torch.distributed (docs/THEORY.md §5b): real gloo processes, the suite's L_simp, L_tri, L_nce.

The rank-r gradient that the loss sends into its own rows, divided by W, must equal the single-process rows
(the DDP equivalence); Theorem 2 and the covariance form of Theorem 1 then hold over the global batch. Each
public bug class fails with its class named; a hanging or raising rank ends in a clear error with every worker
process gone. One pool of workers per world size serves the whole module.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import socket

import pytest
import torch
from hypothesis import given, settings

from dualnet_ssl.distributed import DistributedFailure, WorkerPool, shard_bounds, still_running
from dualnet_ssl.distributed_checks import (check_distributed_gradient, check_gathered_balance,
                                            check_gathered_covariance_form, cross_rank_gradient,
                                            single_process_reference)
from dualnet_ssl.errors import BadInput, IdentityViolation
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.seeding import derive_seed, make_generator
from theorems.strategies import relu_or_leaky, seeds, small_mlp_widths
from theorems.distributed_losses import (gathered_network_loss, gathered_nt_xent, gathered_pair_loss,
                                         exit_on_rank_one, hang_on_last_rank, make_pair_loss, negative_indices,
                                         raise_on_rank_one, sleep_on_rank_one)

LOSSES = ("simp", "triplet", "infonce")
FAULT_CLASS = {"plain_all_gather": "missing_gather_gradient", "gather_backward_no_sum": "missing_gather_gradient",
               "double_averaging": "factor", "labels_for_one_rank": "mispaired_positives",
               "detached_negatives": "other"}
"""The class each built-in fault must be named as, under the 'local_mean' convention."""
FAULT_TIMEOUT = 2.0
"""Seconds a fault-test pool allows a collective or a job (small, so that hang tests end quickly)."""


def _assert_gone(pids):
    alive = still_running(pids)
    assert not alive, f"worker processes still running: {alive}"
    assert not set(pids) & {p.pid for p in multiprocessing.active_children()}


@pytest.fixture(scope="module")
def pools():
    """One worker pool per world size, started on first use and shared by the module; every worker is checked
    gone at the end."""
    started = {}

    def pool(world_size: int) -> WorkerPool:
        if world_size not in started:
            started[world_size] = WorkerPool(world_size, timeout=30.0)
        return started[world_size].start()
    yield pool
    pids = [pid for p in started.values() for pid in p.pids]
    for p in started.values():
        p.close()
    _assert_gone(pids)


def _pairs(seed: int, n_rows: int, dim: int = 4) -> torch.Tensor:
    return torch.randn(n_rows, 2, dim, dtype=torch.float64, generator=make_generator(derive_seed(seed, "pairs")))


def _run_and_reference(pool, batch, convention="local_mean", fault=None, **options):
    """The ranks' results (with ``fault`` built in) and the correct loss's single-process reference."""
    bounds = shard_bounds(batch.shape[0], pool.world_size)
    reference = single_process_reference(gathered_pair_loss, batch, bounds, convention=convention,
                                         kwargs={"convention": convention, **options})
    ranks = pool.run(gathered_pair_loss, batch, kwargs={"convention": convention, "fault": fault, **options})
    return ranks, reference


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("convention,extra_rows", [("local_mean", 0), ("global", 1)])
def test_distributed_gradient_equals_single_process(pools, seed, repro, world_size, loss, convention, extra_rows):
    """§5b: local input gradient / W = single-process rows on every rank (the 'global' case on unequal shards)."""
    batch = _pairs(seed, 3 * world_size + extra_rows)
    ranks, reference = _run_and_reference(pools(world_size), batch, convention, loss=loss)
    check_distributed_gradient(ranks, reference, context=repro(seed=seed, W=world_size, loss=loss))


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("loss", LOSSES)
def test_distributed_balance_over_all_pairs(pools, seed, repro, world_size, loss):
    """Theorem 2 over every pair of the global batch, with the weights autograd produced on each rank."""
    batch = _pairs(seed, 3 * world_size)
    ranks = pools(world_size).run(gathered_pair_loss, batch, kwargs={"loss": loss})
    single = gathered_pair_loss(batch, rank=0, world_size=1, loss=loss)["probes"]
    check_gathered_balance(ranks, make_pair_loss(loss), single["r_pos"].detach(), single["r_neg"].detach(),
                           context=repro(seed=seed, W=world_size))


def _network_case(pool, seed, widths, negative_slope, loss, fault=None):
    """(net, input pairs, ranks' results, single-process gradients, negatives) for a bias-free MLP under a gathered
    loss: 2 pairs per rank, the same weights (from the seed) on every rank."""
    net_seed = derive_seed(seed, "net")
    pairs_input = _pairs(seed, 2 * pool.world_size, dim=widths[0])
    options = {"widths": widths, "net_seed": net_seed, "negative_slope": negative_slope, "loss": loss}
    ranks = pool.run(gathered_network_loss, pairs_input, kwargs={**options, "fault": fault})
    single = gathered_network_loss(pairs_input, rank=0, world_size=1, **options)
    grads = torch.autograd.grad(single["loss"], list(single["parameters"].values()))
    net = BiasFreeMLP(widths, seed=net_seed, negative_slope=negative_slope)
    n = pairs_input.shape[0]
    return net, pairs_input, ranks, dict(zip(net.layer_names(), grads)), negative_indices(torch.arange(n), n, loss)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("loss", LOSSES)
@settings(max_examples=8)
@given(widths=small_mlp_widths(), negative_slope=relu_or_leaky, seed=seeds)
def test_distributed_covariance_form(pools, repro, world_size, loss, widths, negative_slope, seed):
    """Theorem 1 on a bias-free MLP: DDP's averaged gradient = single-process = 2 K Lap(C) K^T w_l, global batch."""
    net, pairs_input, ranks, grads, negatives = _network_case(pools(world_size), seed, widths, negative_slope, loss)
    check_gathered_covariance_form(net, pairs_input, ranks, grads, negatives,
                                   context=repro(seed=seed, W=world_size, loss=loss, widths=widths))


# ---------------------------------------------------------------- every checker can fail

@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("fault", sorted(FAULT_CLASS))
def test_distributed_fault_is_named(pools, seed, world_size, fault):
    """Each bug class of issue 16, built into the suite's gathered L_nce, fails with its class named."""
    ranks, reference = _run_and_reference(pools(world_size), _pairs(seed, 3 * world_size), loss="infonce",
                                          fault=fault)
    with pytest.raises(IdentityViolation, match=rf"{FAULT_CLASS[fault]}: .*rank \d of W={world_size}, rows \["):
        check_distributed_gradient(ranks, reference)


@pytest.mark.parametrize("fault", ["plain_all_gather", "gather_backward_no_sum", "double_averaging"])
def test_distributed_global_convention_faults_are_a_factor(pools, seed, fault):
    """When every rank computes the global loss, a gather without summed gradient halves the step at W=2."""
    ranks, reference = _run_and_reference(pools(2), _pairs(seed, 6), "global", loss="simp", fault=fault)
    with pytest.raises(IdentityViolation, match=r"factor: .*\(1/W"):
        check_distributed_gradient(ranks, reference)


def test_distributed_balance_rejects_mispaired_distances(pools, seed):
    """The balance checker sees positives paired by local index: the gathered r_+ differ from the single process."""
    batch = _pairs(seed, 6)
    ranks = pools(2).run(gathered_pair_loss, batch, kwargs={"loss": "infonce", "fault": "labels_for_one_rank"})
    single = gathered_pair_loss(batch, rank=0, world_size=1, loss="infonce")["probes"]
    with pytest.raises(IdentityViolation, match=r"r_\+ of every anchor \(gathered\) vs single process"):
        check_gathered_balance(ranks, make_pair_loss("infonce"), single["r_pos"].detach(), single["r_neg"].detach())


def test_distributed_balance_rejects_wrong_closed_form(pools, seed):
    """Weights checked against another loss's closed form (L_simp's 1/H instead of InfoNCE's softmax) fail."""
    batch = _pairs(seed, 6)
    ranks = pools(2).run(gathered_pair_loss, batch, kwargs={"loss": "infonce"})
    single = gathered_pair_loss(batch, rank=0, world_size=1, loss="infonce")["probes"]
    with pytest.raises(IdentityViolation, match="beta \\(gathered\\) vs closed form"):
        check_gathered_balance(ranks, make_pair_loss("simp"), single["r_pos"].detach(), single["r_neg"].detach())


def test_distributed_covariance_form_rejects_missing_gather_gradient(pools, seed):
    """With a plain all_gather, DDP's averaged gradient is no longer the single-process one."""
    net, pairs_input, ranks, grads, negatives = _network_case(pools(2), seed, [5, 7, 3], 0.0, "infonce",
                                                              fault="plain_all_gather")
    with pytest.raises(IdentityViolation, match="DDP's averaged gradient vs the single-process gradient"):
        check_gathered_covariance_form(net, pairs_input, ranks, grads, negatives)


def test_distributed_covariance_form_rejects_wrong_pair_weights(pools, seed):
    """Negative weights doubled (balance broken) leave DDP = single process, but not the pair-Laplacian form."""
    net, pairs_input, ranks, grads, negatives = _network_case(pools(2), seed, [5, 7, 3], 0.0, "infonce")
    doubled = [dataclasses.replace(r, probe_grads={**r.probe_grads, "r_neg": 2 * r.probe_grads["r_neg"]})
               for r in ranks]
    with pytest.raises(IdentityViolation, match=r"vs 2 K Lap\(C\) K\^T w_l"):
        check_gathered_covariance_form(net, pairs_input, doubled, grads, negatives)


# ---------------------------------------------------------------- faults of the run itself, and bad input

RANK_FAULTS = [   # the last rank skips the gather (the others' all_gather times out in gloo); rank 1 never returns
                  # (the parent's deadline ends the job); rank 1 raises (its traceback is reported); rank 1 dies
    pytest.param(hang_on_last_rank, {}, "rank 0 timed out in a collective", "timeout", 0,
                 id="hang-in-collective"),
    pytest.param(sleep_on_rank_one, {"grace": 1.0}, r"rank\(s\) \[1\] did not finish", "timeout", 1,
                 id="blocked-rank"),
    pytest.param(raise_on_rank_one, {}, "(?s)raised on rank 1.*rank one refuses", "error", 1,
                 id="raising-rank"),
    pytest.param(exit_on_rank_one, {}, r"rank 1 died \(exit code 3\)", "died", 1, id="dying-rank"),
]


@pytest.mark.parametrize("job, options, message, kind, rank", RANK_FAULTS)
def test_distributed_rank_fault_ends_the_run_naming_the_rank(job, options, message, kind, rank):
    """A rank that hangs, blocks, raises or dies ends the job with a DistributedFailure naming the rank and the
    kind of fault, and every worker is killed."""
    pool = WorkerPool(2, timeout=FAULT_TIMEOUT, **options)
    pool.start()
    pids = pool.pids
    with pytest.raises(DistributedFailure, match=message) as failure:
        pool.run(job, torch.ones(4, 2, dtype=torch.float64))
    assert failure.value.kind == kind and failure.value.rank == rank
    _assert_gone(pids)


def test_distributed_loss_the_workers_cannot_import_is_named(tmp_path, monkeypatch):
    """A loss from a module only the parent can import: a clear error naming it, not a hang."""
    pool = WorkerPool(2, timeout=FAULT_TIMEOUT)
    pool.start()                      # the workers' sys.path is fixed from here on
    pids = pool.pids
    (tmp_path / "parent_only_losses.py").write_text("def loss(x, *, rank, world_size):\n    return x.sum()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import parent_only_losses
    with pytest.raises(DistributedFailure, match="could not receive the job: is parent_only_losses.loss importable"):
        pool.run(parent_only_losses.loss, torch.ones(4, 2, dtype=torch.float64))
    _assert_gone(pids)


def test_distributed_port_in_use_is_retried(seed):
    """A store port already taken is skipped; the pool runs on another and a job completes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with WorkerPool(2, timeout=FAULT_TIMEOUT, port=taken) as pool:
            pids = pool.pids
            ranks = pool.run(gathered_pair_loss, _pairs(seed, 4), kwargs={"loss": "simp"})
            assert taken in pool.refused_ports and pool.port != taken
            assert [r.rank for r in ranks] == [0, 1]
    _assert_gone(pids)


def test_distributed_bad_input_is_refused(pools):
    pool = pools(2)
    with pytest.raises(BadInput, match="float64"):
        pool.run(gathered_pair_loss, torch.ones(4, 2, 3))
    with pytest.raises(BadInput, match="not a top-level function"):
        pool.run(lambda x, **_: x.sum(), torch.ones(4, 2, 3, dtype=torch.float64))
    with pytest.raises(BadInput, match="shard sizes"):
        pool.run(gathered_pair_loss, torch.ones(4, 2, 3, dtype=torch.float64), sizes=[4, 0])
    with pytest.raises(BadInput, match="unequal sizes .* 'local_mean'"):
        single_process_reference(gathered_pair_loss, torch.ones(5, 2, 3, dtype=torch.float64), shard_bounds(5, 2))


# ---------------------------------------------------------------- the slow sweep: no false alarm, every bug caught

@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_distributed_nt_xent_sweep(world_size):
    """A correct gathered NT-Xent passes on 20 seeds at W=2, 3, 4; each bug class is named at every seed."""
    with WorkerPool(world_size, timeout=30.0) as pool:
        for seed in range(20):
            batch = _pairs(seed, 2 * world_size, dim=6)
            reference = single_process_reference(gathered_nt_xent, batch, shard_bounds(batch.shape[0], world_size))
            check_distributed_gradient(pool.run(gathered_nt_xent, batch), reference, context=f"seed {seed}")
            for fault, fault_class in FAULT_CLASS.items():
                ranks = pool.run(gathered_nt_xent, batch, kwargs={"fault": fault})
                with pytest.raises(IdentityViolation, match=f"{fault_class}: "):
                    check_distributed_gradient(ranks, reference, context=f"seed {seed}, fault {fault}")


# ---------------------------------------------------------------- a black-box loss: the regression property

def test_distributed_crossing_route_names_missing_gradient(pools, seed):
    """Without an ``anchors`` argument, 'no gradient crosses the gather' is measured (rank 0's loss alone sends
    exactly 0 to rank 1) rather than computed; a correct gather sends some."""
    batch = _pairs(seed, 6)
    ranks, reference = _run_and_reference(pools(2), batch, loss="infonce", fault="plain_all_gather")
    blind = dataclasses.replace(reference, own_anchor_rows=None)
    crossing = cross_rank_gradient(pools(2), gathered_pair_loss, batch, {"loss": "infonce",
                                                                           "fault": "plain_all_gather"})
    assert crossing == 0.0
    assert cross_rank_gradient(pools(2), gathered_pair_loss, batch, {"loss": "infonce"}) > 0
    with pytest.raises(IdentityViolation, match=r"missing_gather_gradient: .*no gradient at all reaches"):
        check_distributed_gradient(ranks, blind, crossing=crossing)


@pytest.fixture(scope="module")
def regression_pools():
    from dualnet_ssl.regression import distributed as regression_distributed
    yield regression_distributed
    pids = [pid for p in regression_distributed._POOLS.values() for pid in p.pids]
    regression_distributed.close_pools()
    _assert_gone(pids)


@pytest.mark.parametrize("factory,kwargs,verdict", [
    ("make_gather_layer_loss", None, "pass"), ("make_torch_nn_loss", None, "pass"), ("make_moco_loss", None, "pass"),
    ("make_no_sum_loss", None, "missing_gather_gradient"), ("make_plain_gather_loss", None, "missing_gather_gradient"),
    ("make_one_rank_labels_loss", None, "mispaired_positives"),
    # slow: the workers import pytorch-metric-learning, about 10 s on the shared 2-core machine
    pytest.param("make_pml_loss", '{"efficient": false}', "pass", marks=pytest.mark.slow),
    pytest.param("make_pml_loss", '{"efficient": true}', "missing_gather_gradient", marks=pytest.mark.slow)])
def test_distributed_regression_property_on_example_losses(regression_pools, factory, kwargs, verdict):
    """The property ``distributed_gradient`` on user-style gathered NT-Xent losses (examples/mydistributed.py):
    GatherLayer, torch.distributed.nn.functional.all_gather, MoCo's detached keys and pytorch-metric-learning's
    DistributedLossWrapper pass; the bugs are named, and so is the wrapper's efficient=True mode, whose gradient
    skips other ranks' anchors."""
    from dualnet_ssl.regression import load_loss
    if factory == "make_pml_loss":
        pytest.importorskip("pytorch_metric_learning", reason="a peer: pip install -e '.[peers]'")
    result = regression_pools.check_distributed(load_loss(f"examples.mydistributed:{factory}", kwargs), 2, seed=3)
    if verdict == "pass":
        assert result.status == "pass", result.summary()
    else:
        assert result.status == "fail" and f"{verdict}: " in result.message, result.summary()


def test_distributed_world_size_option_is_checked(regression_pools):
    assert regression_pools.parse_world_sizes("2,4") == (2, 4)
    for bad in ("1", "two", ""):
        with pytest.raises(BadInput, match="--ssl-world-size takes integers >= 2"):
            regression_pools.parse_world_sizes(bad)


def test_distributed_property_not_applicable_to_other_forms(regression_pools):
    """A per-anchor (unreduced) loss is reported not applicable, with the reason, never run or failed."""
    from dualnet_ssl.regression import LossSubject, two_view
    subject = LossSubject("per-anchor", lambda: two_view(lambda z0, z1: (z0 - z1).pow(2).sum(1), reduction="none"))
    result = regression_pools.check_distributed(subject, 2, seed=0)
    assert result.status == "not_applicable" and "reduction='none'" in result.message
