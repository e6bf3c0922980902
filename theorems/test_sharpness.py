"""Sharpness of the comparison every checker uses (issue 8): errors just above the documented resolution are
rejected and rounding is accepted, each through a real checker on a real network.

The tolerance table (``dualnet_ssl.tolerances``) claims that float64 identities resolve a relative error of 1e-10
per entry, with an absolute floor of 1e-12, eigenvalues to 1e-9 of the largest, float32 identities to 1e-4. Here a
connection K scaled by 1 + 5x that resolution must be rejected by Theorem 1's checkers, and the unscaled K accepted;
an error in a small output unit must not hide behind a large one (the tolerance is per entry); NaN never passes;
and networks outside the theorems' class are refused, never checked.
"""
import pytest
import torch

from dualnet_ssl.results import CheckResult
from dualnet_ssl import checks
from dualnet_ssl.checks import assert_psd, check_balance, check_gradient_shared, check_homogeneity
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.connection import connection_dense
from dualnet_ssl.errors import BadInput, IdentityViolation, NotApplicable
from dualnet_ssl.networks import BiasFreeMLP
from dualnet_ssl.distributions import gaussian_augmented, random_probabilities
from dualnet_ssl.operators import operator_from_definition, operator_times
from dualnet_ssl.seeding import derive_seed, make_generator
from theorems.nets_outside_class import ResidualMLP, biased_mlp


def _scaled(factor):
    return lambda net, x, name: factor * connection_dense(net, x, name)


def _case(seed, dtype=torch.float64, scale=1.0):
    net = BiasFreeMLP([5, 7, 3], seed=seed, dtype=dtype)
    g = make_generator(derive_seed(seed, "inputs"))
    x1, x2 = (scale * torch.randn(4, 5, generator=g, dtype=torch.float64)).to(dtype), \
        (scale * torch.randn(4, 5, generator=g, dtype=torch.float64)).to(dtype)
    return net, x1, x2


def test_float64_checkers_resolve_five_times_the_relative_tolerance(seed, repro):
    """K scaled by 1 + 5e-10 fails homogeneity ("exact", rtol 1e-10) and Theorem 1 ("gradient", 2 x 2.5e-10);
    K scaled by 1 + 1e-12 passes both (rounding is accepted)."""
    net, x1, x2 = _case(seed)
    context = repro(seed=seed)
    with pytest.raises(IdentityViolation, match="dense K"):
        check_homogeneity(net, x1, "weights.0", connection=_scaled(1 + 5e-10), context=context)
    with pytest.raises(IdentityViolation, match="Theorem 1, shared weights"):
        check_gradient_shared(net, x1, x2, "weights.1", connection=_scaled(1 + 2.5e-10), context=context)
    check_homogeneity(net, x1, "weights.0", connection=_scaled(1 + 1e-12), context=context)
    check_gradient_shared(net, x1, x2, "weights.1", connection=_scaled(1 + 1e-12), context=context)


def test_float64_absolute_floor_does_not_hide_errors_in_small_outputs(seed, repro):
    """Inputs of size 1e-4 give outputs of size ~1e-4: K off by 1e-3 relative is an absolute error ~1e-7, far
    above the float64 floor atol = 1e-12, and must be rejected."""
    net, x1, _ = _case(seed, scale=1e-4)
    with pytest.raises(IdentityViolation, match="dense K"):
        check_homogeneity(net, x1, "weights.0", connection=_scaled(1 + 1e-3), context=repro(seed=seed))


def test_tolerance_is_per_entry_not_per_largest_entry(seed, repro):
    """Output unit 0 scaled up 1e4: an error of 1e-8 relative confined to the small unit 1 is far above its own
    tolerance (1e-10 relative) though far below 1e-10 of the large unit, and must be rejected."""
    net, x1, _ = _case(seed)
    with torch.no_grad():
        net.weights[-1][0] *= 1e4

    def small_unit_off(n, x, name):
        k = connection_dense(n, x, name).clone()
        k[..., 1] *= 1 + 1e-8
        return k
    with pytest.raises(IdentityViolation, match="dense K"):
        check_homogeneity(net, x1, "weights.0", connection=small_unit_off, context=repro(seed=seed))


def test_float32_checkers_resolve_five_times_the_relative_tolerance(seed, repro):
    """float32 ("exact", rtol 1e-4): K scaled by 1 + 5e-4 is rejected, the unscaled K accepted."""
    net, x1, _ = _case(seed, dtype=torch.float32)
    check_homogeneity(net, x1, "weights.0", context=repro(seed=seed, dtype="float32"))
    with pytest.raises(IdentityViolation, match="dense K"):
        check_homogeneity(net, x1, "weights.0", connection=_scaled(1 + 5e-4), context=repro(seed=seed, dtype="float32"))


def test_psd_check_resolves_five_times_the_eigenvalue_tolerance(seed, repro):
    """A real OP_l (PSD, with exact zero eigenvalues) passes; shifted by -5e-9 of its largest eigenvalue
    ("eigenvalue" rtol 1e-9) it must be rejected."""
    net = BiasFreeMLP([6, 10, 8, 3], seed=seed)
    data = random_probabilities(gaussian_augmented(4, 2, 6, 0.3, seed=derive_seed(seed, "data")),
                                seed=derive_seed(seed, "probabilities"))
    op = operator_from_definition(net, "weights.1", data)
    eig = assert_psd(op, what="OP_l", context=repro(seed=seed))
    shift = 5e-9 * float(eig.abs().max()) * torch.eye(op.shape[0], dtype=op.dtype)
    with pytest.raises(IdentityViolation, match="is not PSD"):
        assert_psd(op - shift, what="OP_l - 5e-9 lambda_max I", context=repro(seed=seed))


def test_nan_never_passes(seed, repro):
    """A NaN in either side of an identity, or in a loss's values, is refused, never compared (NaN > tol is False)."""
    net, x1, _ = _case(seed)
    nan_k = lambda n, x, name: connection_dense(n, x, name) * float("nan")
    with pytest.raises(IdentityViolation, match="non-finite"):
        check_homogeneity(net, x1, "weights.0", connection=nan_k, context=repro(seed=seed))
    with pytest.raises(IdentityViolation, match="non-finite"):
        assert_identity(torch.tensor([1.0, float("nan")], dtype=torch.float64),
                        torch.tensor([1.0, 2.0], dtype=torch.float64), what="a NaN entry")
    r_pos = torch.linspace(0.1, 1.0, 8, dtype=torch.float64)
    nan_loss = lambda rp, rn: torch.where(rp > 0.5, rp - rn[..., 0], rp * float("nan"))
    with pytest.raises(BadInput, match="non-finite"):
        check_balance(nan_loss, r_pos, r_pos[:, None].flip(0), context=repro(seed=seed))


def test_networks_outside_the_class_are_refused(seed, repro):
    """A skip connection fails the Euler test; a non-zero bias is named as the reason."""
    x = torch.randn(3, 4, generator=make_generator(seed), dtype=torch.float64)
    with pytest.raises(NotApplicable, match="not positively homogeneous"):
        check_homogeneity(ResidualMLP(seed), x, "w1", context=repro(seed=seed))
    with pytest.raises(NotApplicable, match="non-zero bias"):
        check_homogeneity(biased_mlp(derive_seed(seed, "biased net")), x, "0.weight", context=repro(seed=seed))


def test_operator_structure_checks_the_product_with_a_vector_other_than_w(seed, repro, monkeypatch):
    """The structured OP_l u (one Jacobian-vector product, then one backward pass) is compared for u != w_l too:
    a product that silently returns OP_l w_l whatever u is must be rejected."""
    net = BiasFreeMLP([6, 10, 8, 3], seed=seed)
    data = random_probabilities(gaussian_augmented(4, 2, 6, 0.3, seed=derive_seed(seed, "data")),
                                seed=derive_seed(seed, "probabilities"))
    blind = lambda n, name, d, mass=None, vector=None: operator_times(n, name, d, mass)
    monkeypatch.setattr(checks, "operator_times", blind)
    with pytest.raises(IdentityViolation, match="structured OP_l u"):
        checks.check_operator_structure(net, "weights.1", data, context=repro(seed=seed))


def test_random_probabilities_are_far_from_uniform(seed):
    """The weighting checks of Theorems 3-4 run on ``random_probabilities``: with uniform probabilities a wrong
    weighting cancels, so the draw must be non-uniform in both the samples and the augmentations."""
    data = random_probabilities(gaussian_augmented(5, 3, 4, 0.2, seed=derive_seed(seed, "data")),
                                seed=derive_seed(seed, "probabilities"))
    assert float(data.sample_probs.max() / data.sample_probs.min()) > 1.5, data.sample_probs
    assert float((data.aug_probs.max(1).values / data.aug_probs.min(1).values).min()) > 1.1, data.aug_probs


@pytest.mark.parametrize("status, ok", [("pass", True), ("fail", False), ("not_applicable", False)])
def test_only_a_pass_counts_as_a_pass(status, ok):
    """A verdict that is not applicable (a network outside the class, an undecidable property) is never evidence:
    CheckResult.ok is True for "pass" alone, and the summary says which of the three it is."""
    result = CheckResult(check="balance_total", status=status, message="m", subject="s")
    assert result.ok is ok, f"status {status!r} gave ok={result.ok}"
    expected = {"pass": "balance_total passed", "fail": "balance_total FAILED", "not_applicable": "not applicable"}
    assert expected[status] in result.summary(), result.summary()
    with pytest.raises(ValueError, match="status"):
        CheckResult(check="balance_total", status="passed", message="m")


def test_a_violation_is_an_assertion_never_an_input_error():
    """IdentityViolation is an AssertionError and not a ValueError: code that refuses bad input or an input outside
    the class (BadInput, NotApplicable, both ValueErrors) can never swallow a violated identity as the input's fault."""
    assert issubclass(IdentityViolation, AssertionError)
    assert not issubclass(IdentityViolation, ValueError)
    assert issubclass(BadInput, ValueError) and issubclass(NotApplicable, ValueError)
