"""HLTM (docs/THEORY.md §8): the exact covariance operator on the latent tree, and latent recovery by InfoNCE.

The model and network themselves (belief propagation, wiring, metric, ceiling): test_hltm_model.py."""
import pytest
import torch

from dualnet_ssl import hltm
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.losses import pair_distance
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.operators import operator_from_definition
from dualnet_ssl.seeding import make_generator

EXACT_CASES = [(3, 2, 4), (2, 3, 3)]   # (depth, branching, hid): 8 and 9 leaves, enumerated in full


@pytest.mark.parametrize("depth, branching, hid", EXACT_CASES)
def test_exact_operator_step_amplifies_selectivity(depth, branching, hid, seed, repro):
    """OP (belief propagation) = 1/4 Delta Delta^T (Delta from the brute-force joint), Delta^T w = S, and one
    frozen-gating step is power iteration on S. Symmetry, PSD, rank <= n_L and the spectrum are sanity only."""
    model = hltm.make_hltm(depth, branching, 0.8, seed=seed)
    net = TreeMirrorNet(depth, branching, hid, seed=hltm.derive_seed(seed, "net"))
    context = repro(depth=depth, c=branching, hid=hid, seed=seed)
    hltm.check_exact_operator(net, model, alpha=0.1, context=context)
    # the mechanism's statistic: the root group's z0-explained share = w^T OP w / tr V[f] at the top layer,
    # OP from its definition (closed-form K, no selectivity), tr V[f] under p(x)
    data = hltm.enumerate_leaves(model)
    top = next(n for n in net.layer_names() if net.level_of(n) == 0)
    w = dict(net.named_parameters())[top].detach().flatten()
    op = operator_from_definition(net, top, data.augmented_data())
    with torch.no_grad():
        f = net(data.x)
    centred = f - data.weights @ f
    total_variance = data.weights @ (centred ** 2).sum(1)
    share = hltm.explained_share(net.pre_activations(data.x)[0].detach(), data.posterior[0], data.weights)[0]
    assert_identity(share, w @ op @ w / total_variance, context=context,
                    what="explained share of the root group vs w^T OP w / tr V[f]")


def test_sgd_step_is_plain_sgd_on_fresh_pairs(repro):
    """The training loop, by hand: two runs of an ensemble, two SGD steps of batch 4 each. Each run draws its pairs
    from its own stream derive_seed(seed, "data") (rows 0-3 for step 1, rows 4-7 for step 2), normalises each
    output row to f / (||f|| + eps) and steps on the mean InfoNCE loss -tau log softmax (r = 1/2 ||z - z'||^2)."""
    specs = [hltm.TrainSpec(depth=2, hid=3, steps=2, batch=4, seed=s, dtype=torch.float64) for s in (11, 12)]
    trained = hltm.train_many(specs)
    for spec, result in zip(specs, trained):
        model, net, _ = hltm.build(spec)
        anchor, positive, negative, _ = model.sample_pairs(spec.steps * spec.batch,
                                                           make_generator(hltm.derive_seed(spec.seed, "data")),
                                                           dtype=spec.dtype)
        for step in range(spec.steps):
            rows = slice(step * spec.batch, (step + 1) * spec.batch)
            outs = [net(v[rows]) for v in (anchor, positive, negative)]
            a, p, n = (o / (o.norm(dim=1, keepdim=True) + spec.eps) for o in outs)
            r_pos, r_neg = pair_distance(a, p), pair_distance(a, n)
            loss = (-spec.tau * torch.log(torch.exp(-r_pos / spec.tau)
                                          / (torch.exp(-r_pos / spec.tau) + torch.exp(-r_neg / spec.tau)))).mean()
            grads = torch.autograd.grad(loss, list(net.parameters()))
            with torch.no_grad():
                for w, g in zip(net.parameters(), grads):
                    w -= spec.lr * g
        for (name, expected), actual in zip(net.named_parameters(), result.net.parameters()):
            assert_identity(actual, expected, kind="gradient", context=repro(seed=spec.seed),
                            what=f"{name} after {spec.steps} SGD steps: train_many vs the loop by hand")


def test_official_loss_is_minus_the_softmax_of_batch_mses(repro):
    """The official code's loss: -e^{-m_+/tau} / (e^{-m_+/tau} + e^{-m_-/tau}), m the mean squared error over the
    batch and the output units; it falls as the positive moves closer."""
    g = make_generator(5)
    a, p, n = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    spec = hltm.TrainSpec(loss="official", tau=0.5)
    m_pos, m_neg = ((a - p) ** 2).mean(), ((a - n) ** 2).mean()
    expected = -torch.exp(-m_pos / 0.5) / (torch.exp(-m_pos / 0.5) + torch.exp(-m_neg / 0.5))
    assert_identity(hltm.pair_loss(spec, a, p, n), expected, what="official loss vs its definition", context=repro())


def authors_forward(weights, biases, x, branching):
    """The authors' network written out group by group: each group an affine map of its children's ReLU outputs
    (the leaf bits at the bottom); the output is the root group's pre-activation."""
    h = x
    for w, b in zip(weights, biases):
        groups = [h[:, j * w.shape[2]:(j + 1) * w.shape[2]] @ w[j].T + b[j] for j in range(w.shape[0])]
        pre = torch.cat(groups, 1)
        h = torch.relu(pre)
    return pre


def test_authors_network_and_loss_by_hand(repro):
    """Two SGD steps of the authors' setting (biases; one softmax over batch-averaged squared distances,
    m = mean over batch and units of (f - f')^2, loss -e^{-m_+/tau} / (e^{-m_+/tau} + e^{-m_-/tau})) by train_many
    and by a loop written out group by group. The initialisation is nn.Linear's: |w|, |b| <= 1/sqrt(fan_in)."""
    specs = [hltm.TrainSpec(depth=2, hid=3, steps=2, batch=4, seed=s, dtype=torch.float64, loss="official", bias=True)
             for s in (11, 12)]
    trained = hltm.train_many(specs)
    for spec, result in zip(specs, trained):
        _, net, _ = hltm.build(spec)
        for w, b in zip(net.weights, net.biases):
            bound = w.shape[-1] ** -0.5
            assert float(w.detach().abs().max()) <= bound and float(b.detach().abs().max()) <= bound, \
                "not nn.Linear's initialisation"
        weights = [w.detach().clone().requires_grad_() for w in net.weights]
        biases = [b.detach().clone().requires_grad_() for b in net.biases]
        model = hltm.build(spec)[0]
        views = model.sample_pairs(spec.steps * spec.batch, make_generator(hltm.derive_seed(spec.seed, "data")),
                                   dtype=spec.dtype)[:3]
        for step in range(spec.steps):
            rows = slice(step * spec.batch, (step + 1) * spec.batch)
            outs = [authors_forward(weights, biases, v[rows], spec.branching) for v in views]
            a, p, n = (o / (o.norm(dim=1, keepdim=True) + spec.eps) for o in outs)
            m_pos, m_neg = ((a - p) ** 2).mean(), ((a - n) ** 2).mean()
            loss = -torch.exp(-m_pos / spec.tau) / (torch.exp(-m_pos / spec.tau) + torch.exp(-m_neg / spec.tau))
            grads = torch.autograd.grad(loss, weights + biases)
            with torch.no_grad():
                for t, g in zip(weights + biases, grads):
                    t -= spec.lr * g
        for name, expected in zip([f"weights.{i}" for i in range(2)] + [f"biases.{i}" for i in range(2)],
                                  weights + biases):
            assert_identity(dict(result.net.named_parameters())[name], expected, kind="gradient",
                            context=repro(seed=spec.seed), what=f"{name} after 2 SGD steps: train_many vs by hand")


def test_latent_recovery(hltm_suite_runs, repro):
    """Default case over SUITE_SEEDS: root-level metric rises on average, no level falls beyond noise, and the
    root level ends near its Bayes ceiling (thresholds and their measurements: dualnet_ssl.thresholds)."""
    runs = hltm_suite_runs()[(0.8, True)]
    hltm.check_recovery(runs, context=repro(case=hltm.describe_runs(runs)))


@pytest.mark.slow
def test_latent_recovery_official_settings(device, repro):
    """docs/THEORY.md §8's official run: depth 5, binary, delta_lower 0.8, hid 10, tau 0.1, lr 0.1, batch 128."""
    runs = hltm.train_many([hltm.TrainSpec(depth=5, steps=hltm.OFFICIAL_STEPS, seed=s)
                            for s in hltm.SUITE_SEEDS[:hltm.OFFICIAL_SEEDS]], device=device)
    hltm.check_recovery(runs, min_mean_root_fraction=hltm.OFFICIAL_MIN_MEAN_ROOT_FRACTION,
                        context=repro(case=hltm.describe_runs(runs)))


@pytest.mark.slow
@pytest.mark.parametrize("arm", sorted(hltm.HEADROOM_ARMS))
def test_levels_rise_where_there_is_headroom(arm, device, repro):
    """Depth 4, delta_lower 0.6 (levels start well below their Bayes ceiling): the mean best-|corr| gain over the
    held-out seeds exceeds its threshold at every asserted level, for the suite's InfoNCE (bias-free; levels 0, 1)
    and for the authors' loss on their network with biases (levels 0, 1, 2). Thresholds from seeds 0-5."""
    runs = hltm.train_many(hltm.headroom_specs(arm, hltm.HEADROOM_SEEDS), device=device)
    hltm.check_levels_rise(runs, min_mean_gains=hltm.HEADROOM_MIN_GAINS[arm],
                           context=repro(arm=arm, case=hltm.describe_runs(runs)))
