"""The HLTM's exact facts and machinery (docs/THEORY.md §8): transitions, path correlations, sampling, metric, network.

The exact evidence (belief propagation, wiring, correlations, ceilings vs the brute-force joint) is in
theorems/test_hltm_model.py."""
import pytest
import torch

from dualnet_ssl import hltm
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.losses import simple
from dualnet_ssl.networks import TreeMirrorNet, check_theorem_class
from dualnet_ssl.seeding import derive_seed, make_generator
from dualnet_ssl.operators import expected_loss_neg_gradient, operator_times
from dualnet_ssl.tolerances import tolerance

TREES = [(1, 2), (2, 2), (3, 2), (2, 3), (1, 4)]   # (depth, branching); all small enough for the brute-force joint


@pytest.mark.parametrize("depth, branching", TREES)
def test_transition_probabilities_exact(depth, branching, seed):
    model = hltm.make_hltm(depth, branching, 0.6, seed=seed)
    configs, probs = model.joint_table()
    for l in range(1, depth + 1):
        child = configs[:, model.node_index(l, 0):model.node_index(l, 0) + model.level_size(l)]
        parent = configs[:, model.node_index(l - 1, 0):model.node_index(l - 1, 0) + model.level_size(l - 1)]
        same = (child == parent.repeat_interleave(branching, 1)).double()
        assert_identity(probs @ same, (1 + model.polarities[l]) / 2, what=f"P(z_child = z_parent), level {l}",
                        context=f"{model.describe()}, seed={seed}")


@pytest.mark.parametrize("check", [hltm.check_transitions, hltm.check_latent_correlation])
def test_sampled_latents_match_the_model(check, seed):
    """Transition frequencies and pairwise latent correlations of 100000 sampled trees, within the z threshold."""
    model = hltm.make_hltm(3, 2, 0.5, seed=seed)
    check(model, model.sample_latents(100_000, make_generator(seed)), context=f"seed={seed}")


@pytest.mark.parametrize("depth, branching", TREES)
def test_path_product_correlation_exact(depth, branching, seed):
    model = hltm.make_hltm(depth, branching, 0.3, seed=seed)
    configs, probs = model.joint_table()
    s = configs.double() * 2 - 1
    assert_identity(torch.einsum("s,sa,sb->ab", probs, s, s), model.path_correlations(),
                    what="E[(2z_a-1)(2z_b-1)] = product of rho on the path", context=f"{model.describe()}, seed={seed}")


@pytest.mark.parametrize("depth, branching", [(2, 2), (3, 2)])
def test_enumeration_matches_sampling(depth, branching, seed):
    model = hltm.make_hltm(depth, branching, 0.5, seed=seed)
    hltm.check_enumeration_matches_sampling(model, 100_000, seed=derive_seed(seed, "sampling"),
                                            context=f"{model.describe()}, seed={seed}")


def test_pairs_share_only_the_positive_root(seed):
    model = hltm.make_hltm(2, 2, 0.8, seed=seed)
    n = 20_000
    *_, roots = model.sample_pairs(n, make_generator(seed))
    assert bool((roots[:, 0] == roots[:, 1]).all()), "positive pair must share the root"
    agree = (roots[:, 0] == roots[:, 2]).double().mean()
    stderr = (0.25 / n) ** 0.5
    assert abs(float(agree) - 0.5) <= hltm.family_z_threshold(1) * stderr, \
        f"negative root agrees with the anchor's in {float(agree):.4f} of {n} pairs; independent roots give 1/2"
    *_, noise_roots = model.sample_pairs(n, make_generator(seed), share_root=False)
    assert abs(float((noise_roots[:, 0] == noise_roots[:, 1]).double().mean()) - 0.5) <= hltm.family_z_threshold(1) * stderr


def test_posterior_mean_attains_the_ceiling(seed):
    """corr(E[z|x], z) = sqrt(Var E[z|x] / Var z), and no network unit exceeds it (Cauchy-Schwarz)."""
    model = hltm.make_hltm(3, 2, 0.5, seed=seed)
    data = hltm.enumerate_leaves(model)
    net = TreeMirrorNet(3, 2, 6, seed=seed)
    recovery = hltm.latent_recovery(net, data)
    for l in range(3):
        post = data.posterior[l]
        corr = hltm.unit_correlations(post[:, :, None], post, data.weights)[:, 0]
        assert_identity(corr, data.ceilings()[l], what=f"corr(E[z|x], z) = ceiling, level {l}", context=f"seed={seed}")
        excess = float((recovery.correlations[l].abs() - data.ceilings()[l][:, None]).max())
        assert excess <= tolerance(torch.float64, "exact").atol, \
            f"a unit beats the Bayes ceiling at level {l} by {excess:.3e} (seed={seed})"


def test_selectivity_equals_conditional_mean_difference(seed):
    """selectivity() (= 4 Cov(f, E[z|x])) against E[f | z=1] - E[f | z=0] from the brute-force joint."""
    model = hltm.make_hltm(2, 2, 0.5, seed=seed)
    configs, probs = model.joint_table()
    net = TreeMirrorNet(2, 2, 3, seed=seed)
    with torch.no_grad():
        pres = net.pre_activations(configs[:, -model.n_leaves:].double())
    data = hltm.enumerate_leaves(model)
    with torch.no_grad():
        measured = hltm.selectivity(net.pre_activations(data.x)[1], data.posterior[1], data.weights)
    for j in range(2):
        z = configs[:, model.node_index(1, j)]
        f = pres[1][:, j, :]
        direct = (probs[z] @ f[z]) / probs[z].sum() - (probs[~z] @ f[~z]) / probs[~z].sum()
        assert_identity(measured[j], direct, what=f"selectivity of level-1 group {j}", context=f"seed={seed}")


def test_sampled_eval_set_ceiling_matches_enumeration(seed):
    model = hltm.make_hltm(3, 2, 0.5, seed=seed)
    exact, sampled = hltm.enumerate_leaves(model), hltm.sampled_eval_set(model, 50_000, seed=seed)
    for l in range(3):
        # sd of a sampled 2 * sd(E[z|x]) is at most 1/sqrt(n) (values in [0, 1])
        bound = hltm.family_z_threshold(model.level_size(l)) / 50_000 ** 0.5
        diff = float((exact.ceilings()[l] - sampled.ceilings()[l]).abs().max())
        assert diff <= bound, f"sampled ceiling off by {diff:.4f} > {bound:.4f} at level {l} (seed={seed})"


@pytest.mark.parametrize("depth, branching, hid", [(1, 2, 3), (3, 2, 4), (2, 3, 2)])
def test_tree_mirror_net_is_in_the_theorem_class(depth, branching, hid, seed):
    net = TreeMirrorNet(depth, branching, hid, seed=seed)
    x = hltm.all_bit_vectors(branching ** depth)
    check_theorem_class(net, x)
    assert net(x).shape == (x.shape[0], hid)
    assert_identity(net(x, net.gates(x)), net(x), what="frozen gates reproduce the forward pass")


def test_exact_gradient_on_hltm_is_twice_the_operator(seed):
    """Theorem 3 on the HLTM data (z0 = sample, p(x|z0) = augmentation) and TreeMirrorNet, by enumeration."""
    model = hltm.make_hltm(2, 2, 0.7, seed=seed)
    net = TreeMirrorNet(2, 2, 3, seed=seed)
    data = hltm.enumerate_leaves(model).augmented_data()
    for name in net.layer_names():
        neg_grad, _ = expected_loss_neg_gradient(net, name, data, simple())
        assert_identity(neg_grad, 2 * operator_times(net, name, data), what="-dE[L_simp]/dw = 2 OP w",
                        kind="gradient", context=f"layer {name}, seed={seed}")


def test_ensemble_training_equals_single_runs():
    specs = [hltm.TrainSpec(seed=s, steps=30) for s in (1, 2)]
    together = hltm.train_many(specs)
    for spec, run in zip(specs, together):
        alone = hltm.train(spec)
        for name, w in alone.net.named_parameters():
            assert_identity(dict(run.net.named_parameters())[name].detach(), w.detach(), kind="exact",
                            what=f"ensemble vs single run, {name}", context=spec.describe())


def test_training_refuses_mixed_ensembles():
    with pytest.raises(hltm.BadInput, match="hid"):
        hltm.train_many([hltm.TrainSpec(hid=10), hltm.TrainSpec(hid=2)])


def test_brute_force_eval_set_matches_enumeration(seed):
    """The two enumerated evaluation sets (belief propagation, brute-force joint) agree: weights, p(x | z0), posteriors."""
    model = hltm.make_hltm(3, 2, 0.7, seed=seed)
    bp, joint = hltm.enumerate_leaves(model), hltm.brute_force_eval_set(model)
    assert_identity(bp.weights, joint.weights, what="p(x)", context=f"seed={seed}")
    assert_identity(bp.p_given_root, joint.p_given_root, what="p(x | z0)", context=f"seed={seed}")
    for l in range(3):
        assert_identity(bp.posterior[l], joint.posterior[l], what=f"E[z | x], level {l}", context=f"seed={seed}")


def test_suite_seeds_set_no_threshold():
    """The default checks' seeds are disjoint from, and not adjacent to, the seeds recorded in the threshold table."""
    from dualnet_ssl import thresholds
    recorded = set()
    for name in dir(thresholds):
        entry = getattr(thresholds, name)
        if name.startswith("HLTM_") and isinstance(entry, thresholds.Threshold):
            for part in entry.seeds.split(","):
                lo, _, hi = part.strip().partition("-")
                recorded |= set(range(int(lo), int(hi or lo) + 1))
    assert recorded, "no HLTM thresholds with seeds found in dualnet_ssl.thresholds"
    near = {s + d for s in hltm.SUITE_SEEDS for d in (-1, 0, 1)}
    assert not near & recorded, f"SUITE_SEEDS {hltm.SUITE_SEEDS} touch threshold seeds {sorted(near & recorded)}"


@pytest.mark.gpu
def test_training_on_cuda_matches_cpu():
    """--device is honoured: 30 float64 SGD steps on CUDA give the CPU weights (same pairs, same init)."""
    spec = hltm.TrainSpec(seed=3, steps=30, dtype=torch.float64)
    cpu, cuda = hltm.train(spec), hltm.train(spec, device="cuda")
    for name, w in cpu.net.named_parameters():
        assert_identity(dict(cuda.net.named_parameters())[name].detach(), w.detach(), kind="gradient",
                        what=f"CUDA vs CPU training, {name}", context=spec.describe())


def test_family_threshold_gives_a_family_the_rate_of_one_comparison():
    """Bonferroni: n comparisons at the family threshold t have a union-bound false-alarm rate n * 2 (1 - Phi(t))
    equal to one comparison's at Z_SCORE_FALSE_ALARM (4 sigma, 6.3e-5); t is 4 for n = 1 and about 5.3 for 512."""
    from scipy.stats import norm
    single = 2 * norm.sf(4.0)
    for n in (1, 8, 512):
        t = hltm.family_z_threshold(n)
        assert abs(n * 2 * norm.sf(t) - single) <= 1e-9 * single, (n, t)
    assert abs(hltm.family_z_threshold(1) - 4.0) < 1e-9 and 5.2 < hltm.family_z_threshold(512) < 5.4
