"""Unit and rejection tests of the digits study (reference/digits/): augmentations, the exact empirical
distribution, the two-view batch losses, and checkers fed wrong quantities."""
import dataclasses

import pytest
import torch

pytest.importorskip("sklearn", reason='the digits tests need scikit-learn: pip install -e ".[digits]"')

from dualnet_ssl import losses  # noqa: E402
from dualnet_ssl.checks import check_residue_ratio_falls, check_residue_zero, check_simp_covariance  # noqa: E402
from dualnet_ssl.digits.checks import check_claim  # noqa: E402
from dualnet_ssl.digits.data import augment, draw_augmentations, load_digits, split_indices  # noqa: E402
from dualnet_ssl.digits.exact import empirical_distribution  # noqa: E402
from dualnet_ssl.digits.metrics import knn_accuracy, unit_variances  # noqa: E402
from dualnet_ssl.digits.training import TrainSpec, two_view_loss  # noqa: E402
from dualnet_ssl.errors import BadInput, IdentityViolation  # noqa: E402
from dualnet_ssl.networks import BiasFreeMLP  # noqa: E402
from dualnet_ssl.seeding import make_generator  # noqa: E402
from dualnet_ssl.thresholds import Threshold  # noqa: E402


@pytest.fixture
def batch(seed):
    digits = load_digits()
    return digits.images[:6], draw_augmentations(6, make_generator(seed)), digits.max_intensity


def test_digits_are_scaled_to_unit_mean_squared_norm():
    digits = load_digits()
    assert digits.images.shape == (1797, 8, 8) and digits.labels.unique().tolist() == list(range(10))
    assert abs(float(digits.images.flatten(1).pow(2).sum(1).mean()) - 1.0) < 1e-12
    assert float(digits.images.max()) == pytest.approx(digits.max_intensity)


def test_zero_strength_is_exactly_the_identity(batch):
    images, draw, top = batch
    assert torch.equal(augment(images, draw, 0.0, top), images)


def test_augmentations_change_images_more_as_strength_grows(batch):
    images, draw, top = batch
    changes = [float((augment(images, draw, s, top) - images).flatten(1).norm(dim=1).min()) for s in (0.1, 0.3, 1.0)]
    assert 0 < changes[0] < changes[1] < changes[2], changes


@pytest.mark.parametrize("part", ["shift", "angle", "noise", "erase_mask"])
def test_each_augmentation_alone_changes_images(batch, part):
    images, draw, top = batch
    zero = dataclasses.replace(draw, shift=torch.zeros_like(draw.shift), angle=torch.zeros_like(draw.angle),
                               noise=torch.zeros_like(draw.noise), erase_mask=torch.zeros_like(draw.erase_mask))
    alone = dataclasses.replace(zero, **{part: torch.ones_like(getattr(draw, part))})
    assert torch.equal(augment(images, zero, 1.0, top), images)
    assert not torch.equal(augment(images, alone, 1.0, top), images)


def test_integer_shift_is_a_zero_padded_crop(batch):
    images, draw, top = batch
    one_row = dataclasses.replace(draw, shift=torch.tensor([[1.0, 0.0]]).expand(6, 2), angle=torch.zeros(6),
                                  noise=torch.zeros(6, 8, 8), erase_mask=torch.zeros(6, 8, 8))
    moved = augment(images, one_row, 1.0, top)
    assert torch.equal(moved[:, 1:], images[:, :-1]) and torch.equal(moved[:, 0], torch.zeros(6, 8, dtype=moved.dtype))


def test_bad_strength_and_shapes_are_refused(batch):
    images, draw, top = batch
    with pytest.raises(BadInput, match=r"strength s must lie in \[0, 1\]"):
        augment(images, draw, 1.5, top)
    with pytest.raises(BadInput, match="expected images of shape"):
        augment(images[:3], draw, 0.5, top)
    with pytest.raises(BadInput, match="n_test must lie"):
        split_indices(10, 10, seed=0)
    with pytest.raises(BadInput, match="unknown loss"):
        TrainSpec(loss="nce")


def test_empirical_distribution_is_seeded_and_uniform():
    a = empirical_distribution(4, 3, 0.5, seed=7)
    b = empirical_distribution(4, 3, 0.5, seed=7, image_shape=True)
    assert a.views.shape == (4, 3, 64) and b.views.shape == (4, 3, 1, 8, 8)
    assert torch.equal(a.views, b.views.reshape(4, 3, 64))
    assert not torch.equal(a.views, empirical_distribution(4, 3, 0.5, seed=8).views)
    clean = empirical_distribution(4, 3, 0.0, seed=7).views
    assert torch.equal(clean, clean[:, :1].expand_as(clean))
    assert torch.equal(a.aug_probs, torch.full((4, 3), 1 / 3, dtype=torch.float64))


def _explicit_losses(z1, z2, tau):
    """The two-view losses from their definitions, one anchor at a time."""
    b = z1.shape[0]
    z = torch.cat([z1, z2])
    values = {"simp": [], "triplet": [], "infonce": []}
    for a in range(2 * b):
        r_pos = losses.pair_distance(z[a], z[(a + b) % (2 * b)])
        r_neg = torch.stack([losses.pair_distance(z[a], z[n]) for n in range(2 * b) if n % b != a % b])
        values["simp"].append(losses.simple_loss(r_pos, r_neg))
        values["triplet"].extend(losses.triplet_loss(r_pos, r_neg[k:k + 1], tau=tau, margin=0.0)
                                 for k in range(len(r_neg)))
        values["infonce"].append(losses.infonce_loss(r_pos, r_neg, tau=tau))
    return {k: torch.stack(v).mean() for k, v in values.items()}


def test_two_view_losses_match_their_definitions(seed):
    g = make_generator(seed)
    z1, z2 = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    for kind, value in _explicit_losses(z1, z2, 0.5).items():
        assert torch.allclose(two_view_loss(z1, z2, kind, 0.5), value, rtol=1e-12, atol=1e-14), kind


def test_main_term_only_equals_infonce_gradient_without_augmentation_and_differs_with_it(seed):
    """With identical views the residue is 0 (docs/THEORY.md §7), so the detached-weight loss has InfoNCE's gradient."""
    g = make_generator(seed)
    z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    noise = 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)

    def grad(kind, z2_offset):
        z1 = z.clone().requires_grad_(True)
        two_view_loss(z1, z1 + z2_offset, kind, 0.5).backward()
        return z1.grad

    assert torch.allclose(grad("maincov", 0.0), grad("infonce", 0.0), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(grad("maincov", noise), grad("infonce", noise), rtol=1e-3, atol=1e-6)


def test_knn_and_unit_variances_on_known_cases():
    train = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    labels = torch.tensor([0] * 5 + [1] * 5)
    assert knn_accuracy(train, labels, torch.tensor([[2.0, 0.1], [0.1, 3.0]]), torch.tensor([0, 1])) == 1.0
    assert knn_accuracy(train, labels, torch.tensor([[2.0, 0.1], [0.1, 3.0]]), torch.tensor([1, 0])) == 0.0
    net = BiasFreeMLP([64, 6, 3], seed=1)
    clean = unit_variances(net, empirical_distribution(5, 3, 0.0, seed=1))[0]   # no augmentation: within = 0
    augmented = unit_variances(net, empirical_distribution(5, 3, 1.0, seed=1))[0]
    assert clean["across_share"] == pytest.approx(1.0, abs=1e-12) and augmented["across_share"] < 1 - 1e-3
    assert 0 < clean["live_units"] <= 6 and 0 < augmented["live_units"] <= 6


# ------------------------------------------------------------------ checkers must be able to fail

def test_simp_checker_rejects_a_wrong_factor_on_real_digits(seed):
    net = BiasFreeMLP([64, 8, 4], seed=seed)
    data = empirical_distribution(4, 3, 1.0, seed=seed)
    with pytest.raises(IdentityViolation, match=r"-dE\[L_simp\]/dw_l \(autograd\) vs 1 V\[Kbar_l\] w_l \[Theorem 3"):
        check_simp_covariance(net, "weights.0", data, factor=1.0, context="digits")


def test_residue_zero_checker_rejects_infonce_on_augmented_digits(seed):
    net = BiasFreeMLP([64, 8, 4], seed=seed)
    with pytest.raises(IdentityViolation, match="theta must be 0"):
        check_residue_zero(net, "weights.1", empirical_distribution(4, 3, 1.0, seed=seed), losses.infonce(0.5))


def test_strength_sweep_checker_rejects_a_falling_ratio():
    sweep = {"sigmas": [0.1, 0.3, 1.0], "ratios": [0.3, 0.2, 0.1], "exponent": -1.0}
    with pytest.raises(IdentityViolation, match="does not fall as sigma falls"):
        check_residue_ratio_falls(sweep, (1.0, 3.0), context="digits")


def test_claim_checker_rejects_a_figure_beyond_its_threshold():
    limit = Threshold(2.0, "made up", "none", "test")
    check_claim("spread falls", "spread_drop", {3: 2.5, 4: 3.0}, limit)
    with pytest.raises(IdentityViolation, match=r"'spread falls' does not hold: spread_drop must be >= 2.*seed 4: 1.5"):
        check_claim("spread falls", "spread_drop", {3: 2.5, 4: 1.5}, limit)
    with pytest.raises(IdentityViolation, match="must be <= 2"):
        check_claim("ratio stays low", "final_ratio", {3: float("nan")}, limit, above=False)
