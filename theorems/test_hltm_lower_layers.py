"""HLTM lower layers (docs/THEORY.md §8, "Lower layers"): the covariance operator OP_l of every layer below the top
and the selectivity of that layer's latents. Exact with gating that does not depend on x; measured with ReLU gates."""
import pytest
import torch

from dualnet_ssl import hltm
from dualnet_ssl.errors import IdentityViolation
from dualnet_ssl.hltm import lower_layers
from dualnet_ssl.networks import TreeMirrorNet
from dualnet_ssl.seeding import make_generator
from dualnet_ssl.thresholds import HLTM_ALIGNMENT_MIN_MEAN_LEVEL1, HLTM_ALIGNMENT_MIN_MEAN_LEVEL2

EXACT_CASES = [(3, 2, 4, 0), (3, 2, 4, 1), (3, 2, 4, 2), (2, 3, 3, 0), (2, 3, 3, 1)]   # depth, c, hid, level
ALIGNMENT_CASE = dict(depth=3, branching=2, hid=10, delta_lower=0.8)
HLTM_ALIGNMENT_MIN_MEAN = {1: HLTM_ALIGNMENT_MIN_MEAN_LEVEL1, 2: HLTM_ALIGNMENT_MIN_MEAN_LEVEL2}


def case(depth, branching, hid, seed, delta_lower=0.8):
    model = hltm.make_hltm(depth, branching, delta_lower, seed=seed)
    return model, TreeMirrorNet(depth, branching, hid, seed=hltm.derive_seed(seed, "net"))


def relu_alignments(seed, levels):
    model, net = case(ALIGNMENT_CASE["depth"], ALIGNMENT_CASE["branching"], ALIGNMENT_CASE["hid"], seed,
                      ALIGNMENT_CASE["delta_lower"])
    return lower_layers.layer_alignments(net, model, levels=levels)


@pytest.mark.parametrize("linear", [True, False], ids=["linear-above", "random-gates-above"])
@pytest.mark.parametrize("depth, branching, hid, level", EXACT_CASES)
def test_lower_layer_operator_is_the_selectivity_outer_product(depth, branching, hid, level, linear, seed, repro):
    """Gates fixed above layer l (all open, or a random 0/1 pattern): Kbar_l(z0=1) - Kbar_l(z0=0) = rho_0g J_g (x) a_g,
    so OP_l = 1/4 Delta Delta^T and its top eigenvector is aligned with the latents' selectivity (alignment 1)."""
    model, net = case(depth, branching, hid, seed)
    patterns = lower_layers.random_gate_patterns(net, level, seed=hltm.derive_seed(seed, "gates"), linear=linear)
    lower_layers.check_lower_layer_operator(net, model, level, patterns,
                                            context=repro(depth=depth, c=branching, hid=hid, level=level, seed=seed))


def test_lower_layer_alignment_with_relu_gates(repro):
    """The network's own ReLU gates (J_g varies with x): over SUITE_SEEDS, the mean alignment of OP_l's top
    eigenvector with the selectivity directions exceeds the threshold set on seeds 0-23 (chance sqrt(1/fan_in))."""
    runs = [relu_alignments(s, levels=(1, 2)) for s in hltm.SUITE_SEEDS]
    for level, minimum in HLTM_ALIGNMENT_MIN_MEAN.items():
        lower_layers.check_alignment_above(runs, minimum=minimum, levels=(level,),
                                           context=repro(**ALIGNMENT_CASE, seeds=hltm.SUITE_SEEDS))


def test_alignment_figure_is_one_along_and_zero_across():
    """The figure itself: a direction whose rows are multiples of a_g scores 1; rows orthogonal to a_g score 0."""
    g = make_generator(7)
    a = torch.randn(2, 5, generator=g, dtype=torch.float64)
    along = torch.randn(2, 3, 1, generator=g, dtype=torch.float64) * a[:, None, :]
    across = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    across = across - (across @ a[:, :, None]) / (a * a).sum(-1)[:, None, None] * a[:, None, :]
    assert abs(float(lower_layers.selectivity_alignment(along.flatten(), a, (2, 3, 5))) - 1) < 1e-12
    assert float(lower_layers.selectivity_alignment(across.flatten(), a, (2, 3, 5))) < 1e-12


# ---- rejections: each check fails on a named fault ----

def test_operator_check_rejects_a_permuted_latent_assignment(seed, monkeypatch):
    """a_g taken from the wrong latent (the groups' selectivities rotated among the level's groups)."""
    true_a = lower_layers.joint_input_selectivity
    monkeypatch.setattr(lower_layers, "joint_input_selectivity",
                        lambda *args: true_a(*args).roll(1, dims=0))
    model, net = case(3, 2, 4, seed)
    patterns = lower_layers.random_gate_patterns(net, 1, seed=seed, linear=True)
    with pytest.raises(IdentityViolation, match="rho_0g J_g"):
        lower_layers.check_lower_layer_operator(net, model, 1, patterns)


def test_operator_check_rejects_a_wrong_path_polarity(seed, monkeypatch):
    """rho_0g without the edge into level l (the product stopped one level short)."""
    monkeypatch.setattr(lower_layers, "path_polarities",
                        lambda model, level: torch.ones(model.level_size(level), dtype=torch.float64))
    model, net = case(3, 2, 4, seed)
    with pytest.raises(IdentityViolation, match="rho_0g J_g"):
        lower_layers.check_lower_layer_operator(net, model, 2, lower_layers.random_gate_patterns(net, 2, seed=seed,
                                                                                                  linear=True))


class IgnoresPatterns(lower_layers.ConstantGatesAbove):
    """The operator of the network's own ReLU gates, while the closed form assumes the fixed patterns."""

    forward_cache = TreeMirrorNet.forward_cache


def test_operator_check_rejects_x_dependent_gates(seed, monkeypatch):
    """Outside the identity's setting: with the network's own ReLU gates above layer l, J_g varies with x and the
    factorisation fails (the check must not pass it)."""
    monkeypatch.setattr(lower_layers, "ConstantGatesAbove", IgnoresPatterns)
    model, net = case(3, 2, 4, seed)
    with pytest.raises(IdentityViolation, match="rho_0g J_g"):
        lower_layers.check_lower_layer_operator(net, model, 2, lower_layers.random_gate_patterns(net, 2, seed=seed,
                                                                                                  linear=True))


def test_alignment_check_rejects_a_random_direction(seed, monkeypatch):
    """A wrong operator: a random direction in place of OP_l's top eigenvector scores near chance and fails."""
    g = make_generator(seed)
    monkeypatch.setattr(lower_layers, "top_direction",
                        lambda delta: torch.randn(delta.shape[0], generator=g, dtype=torch.float64))
    runs = [relu_alignments(s, levels=(1,)) for s in hltm.SUITE_SEEDS[:3]]
    with pytest.raises(IdentityViolation, match="top eigenvector with the latents' selectivity"):
        lower_layers.check_alignment_above(runs, minimum=HLTM_ALIGNMENT_MIN_MEAN[1], levels=(1,))
