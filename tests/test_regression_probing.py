"""Unit tests of the regression mode's machinery: the Gram-matrix probe, layouts, loading, verdicts, the report.

The probe's recovered pair weights are checked against autograd of the closed-form losses of
docs/THEORY.md §4 (an independent route: derivatives in r, not through cholesky(G)); networks outside the
theorems' class must come back "not applicable", never failed or crashed; the pytest plugin is run
end to end in-process (pytester) on the example package.
"""
import json
from pathlib import Path

import pytest
import torch

from dualnet_ssl import regression
from dualnet_ssl.compare import assert_identity
from dualnet_ssl.errors import BadInput
from dualnet_ssl.losses import autograd_weights
from dualnet_ssl.seeding import make_generator

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("factory", [regression.reference_nt_xent, regression.reference_simple, regression.reference_triplet])
def test_recovered_weights_equal_autograd_of_the_pair_loss(factory, seed, repro):
    adapter = factory()
    probe = regression.make_probe(adapter, seed)
    got = regression.recover_weights(adapter, probe).pairs
    batch = adapter.fn
    r_pos, r_neg = regression.anchor_distances(probe.layout, probe.points(), normalise=False)
    beta, beta_k = autograd_weights(batch.pair_loss, r_pos, r_neg)
    scale = batch.scale * regression.anchor_weight(probe.layout, adapter.reduction)
    want = regression.assemble_pair_weights(probe.layout, beta, beta_k, scale)
    assert_identity(got, want, what=f"probe weights dL/dr of {adapter.name}", kind="gradient", context=repro())


def test_gram_gradient_gives_each_pair_its_weight(seed, repro):
    """L = sum_{i<j} c_ij r_ij with r_ij = (G_ii + G_jj)/2 - G_ij: the recovered weights are c exactly."""
    n = 7
    g = make_generator(seed)
    c = torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64), diagonal=1)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    gram = (a @ a.T).requires_grad_(True)
    diag = torch.diagonal(gram)
    r = 0.5 * (diag[:, None] + diag[None, :]) - gram
    (grad,) = torch.autograd.grad((c * r).sum(), gram)
    assert_identity(regression.pair_weights_from_gram_gradient(grad), c + c.T, what="recovered pair weights",
                    kind="gradient", context=repro(n=n))


@pytest.mark.parametrize("spec", ["dualnet_ssl.regression:reference_nt_xent", "examples.mylosses:make_loss"])
def test_probe_points_have_the_chosen_gram(spec, seed, repro):
    adapter = regression.load_loss(spec).build()
    probe = regression.make_probe(adapter, seed)
    z = probe.points()
    assert z.shape == (probe.layout.n_points, probe.dim) and probe.dim >= probe.layout.n_points, repro()
    assert_identity(z @ z.T, probe.gram, what=f"Z Z^T vs G for {adapter.name}", context=repro())
    if adapter.normalises:
        assert_identity(torch.diagonal(probe.gram), torch.ones(probe.layout.n_points, dtype=torch.float64),
                        what="unit rows for a loss that normalises", context=repro())


def test_layouts_declare_the_pairs_each_convention_uses():
    one_directional = regression.LossAdapter(lambda a, b: a.sum(), symmetric=False, same_view_negatives=False)
    #          z0: 0 1 2   z1: 3 4 5      anchors 0..2; positive i <-> 3+i; negatives: other samples' z1
    expected = torch.tensor([[0, 0, 0, 1, -1, -1], [0, 0, 0, -1, 1, -1], [0, 0, 0, -1, -1, 1],
                             [1, -1, -1, 0, 0, 0], [-1, 1, -1, 0, 0, 0], [-1, -1, 1, 0, 0, 0]])
    assert torch.equal(one_directional.layout(3).roles(), expected), one_directional.layout(3).roles()
    simclr = regression.reference_simple().layout(3)
    expected = -torch.ones(6, 6, dtype=torch.long)        # every other point is a negative (same view too) ...
    expected.fill_diagonal_(0)                             # ... but a point is no pair with itself ...
    expected[torch.arange(6), (torch.arange(6) + 3) % 6] = 1   # ... and i <-> i + N are the positives
    assert torch.equal(simclr.roles(), expected), simclr.roles()
    paired = regression.per_anchor(lambda q, p, n: q.sum(), negative_mode="paired", n_negatives=2).layout(2)
    assert paired.n_points == 8 and paired.negatives.tolist() == [[4, 5], [6, 7]], paired
    z = torch.arange(16.0).reshape(8, 2)
    query, positive, negatives = paired.split(z)
    assert negatives.shape == (2, 2, 2) and torch.equal(paired.join(query, positive, negatives), z)


@pytest.mark.parametrize("spec, kwargs, declares, says", [
    ("examples.mylosses.make_loss", None, None, "not of the form"),
    ("examples.no_such_module:make_loss", None, None, "cannot import"),
    ("examples.mylosses:no_such_factory", None, None, "has no attribute"),
    ("examples.mylosses:NTXent", None, None, "declare which pairs"),
    ("examples.mylosses:NTXent", None, '{"form": "two_view", "colour": "red"}', "unknown fields"),
    ("examples.mylosses:NTXent", None, '{"form": "three_view"}', "is not one of"),
    ("examples.mylosses:make_loss", "{temperature: 0.2}", None, "not valid JSON"),
    ("examples.mylosses:make_loss", "[0.2]", None, "must be a JSON object"),
    ("examples.mylosses:make_loss", '{"tau": 0.2}', None, "failed"),
])
def test_loader_refuses_bad_specs_with_the_reason(spec, kwargs, declares, says):
    with pytest.raises(BadInput, match=says):
        regression.load_loss(spec, kwargs, declares)


@pytest.mark.parametrize("factory, why", [("make_net_with_bias", "non-zero bias"),
                                          ("make_net_with_batchnorm", "BatchNorm1d"),
                                          ("make_residual_net", "not positively homogeneous")])
def test_networks_outside_the_class_are_not_applicable(factory, why, seed, repro):
    net = regression.load_net(f"examples.mynets:{factory}")
    loss = regression.builtin_loss(regression.reference_nt_xent)
    for prop in regression.NET_PROPERTIES:
        r = regression.check_network(net, prop, seed)
        # the theorems on the network itself do not apply; its bias-free twin, when in the class, is checked
        allowed = ("pass", "not_applicable") if prop == "bias_free_twin" else ("not_applicable",)
        assert r.status in allowed and why in r.message, f"{r.summary()}; {repro(net=factory)}"
    r = regression.check_covariance_form(loss, net, seed)
    assert r.status in ("pass", "not_applicable") and why in r.message, f"{r.summary()}; {repro(net=factory)}"


def test_loss_that_raises_or_has_no_gradient_is_reported_not_crashed(seed, repro):
    def broken(z0, z1):
        raise ValueError("expects 128-dimensional embeddings")
    raising = regression.LossSubject("raises", lambda: regression.two_view(broken))
    result = regression.check_loss(raising, "balance_total", seed)
    assert result.status == "fail" and "ValueError: expects 128" in result.message, f"{result.summary()}; {repro()}"
    flat = regression.LossSubject("flat", lambda: regression.two_view(lambda z0, z1: 0.0 * (z0 - z1).sum()))
    result = regression.check_loss(flat, "balance_total", seed)
    assert result.status == "not_applicable" and "zero on every pair" in result.message, f"{result.summary()}"


def test_covariance_form_catches_an_unbalanced_network_loss_pairing(seed, repro):
    """The covariance check can fail: a loss of |z| (not of pairwise distances) on a bias-free net."""
    norm_loss = regression.LossSubject("norm", lambda: regression.two_view(lambda z0, z1: (z0 ** 2).sum() + z1.sum()))
    net = regression.NetSubject(regression.reference_mlp().name, regression.reference_mlp)
    result = regression.check_covariance_form(norm_loss, net, seed)
    assert result.status == "fail" and result.summary().startswith("covariance_form FAILED"), \
        f"{result.summary()}; {repro()}"


def _run(pytester, *args):
    """The installed plugin (entry point), in-process, in a fresh directory that can import examples/."""
    pytester.syspathinsert(ROOT)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", *args)


def test_plugin_reports_a_buggy_user_loss(pytester, tmp_path):
    report = tmp_path / "report.json"
    result = _run(pytester, "--ssl-loss", "examples.mylosses:make_buggy_loss", "--ssl-report", str(report))
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["*balance_total FAILED for examples.mylosses:make_buggy_loss*not balanced*"
                                 "reproduce: pytest --ssl-loss examples.mylosses:make_buggy_loss*"])
    data = json.loads(report.read_text())   # strict JSON (json.loads accepts NaN; the writer forbids it)
    assert data["format"] == "dualnet-ssl-regression/2" and data["summary"]["fail"] >= 1, data["summary"]
    balance = next(r for r in data["records"] if r["property"] == "balance_total")
    assert balance["status"] == "fail" and balance["measured"] > 0 and "rtol=" in balance["tolerance"], balance
    assert isinstance(balance["seed"], int) and "--ssl-loss" in balance["reproduce"], balance
    assert {r["network"] for r in data["records"]} <= {None, regression.reference_mlp().name}, \
        "with only --ssl-loss, no network property of the suite's own network is reported"


def test_plugin_says_not_applicable_for_a_network_with_biases(pytester):
    result = _run(pytester, "--ssl-model", "examples.mynets:make_net_with_bias")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*SKIPPED*not applicable: module '0' (Linear) has a non-zero bias*"])
    result.assert_outcomes(skipped=len(regression.NET_PROPERTIES) - 1, passed=1)   # bias_free_twin runs on its twin


def test_plugin_passes_a_correct_user_loss_and_refuses_a_bad_spec(pytester):
    good = _run(pytester, "--ssl-loss", "examples.mylosses:make_loss", "--ssl-loss-kwargs", '{"temperature": 0.2}')
    assert good.ret == pytest.ExitCode.OK, good.stdout.str()
    bad = _run(pytester, "--ssl-loss", "examples.mylosses:nothing_here")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*regression-check mode: 'examples.mylosses' has no attribute 'nothing_here'*"])


def test_plugin_is_silent_without_ssl_options_and_runs_alone_with_them(pytester):
    """Without --ssl-* a user's run is untouched; with them and no paths, only the regression checks run."""
    pytester.makepyfile(test_users_own="def test_own():\n    assert True\n")
    plain = _run(pytester)
    plain.assert_outcomes(passed=1)
    alone = _run(pytester, "--ssl-loss", "examples.mylosses:make_loss", "-k", "balance_total")
    alone.assert_outcomes(passed=1)
    both = _run(pytester, "test_users_own.py", "--ssl-loss", "examples.mylosses:make_loss", "-k", "own or balance_total")
    both.assert_outcomes(passed=2)


def test_a_user_package_named_reference_neither_shadows_nor_is_shadowed(pytester):
    """The suite installs as dualnet_ssl: a user's own top-level 'reference' package keeps its name.

    A subprocess, so that nothing of this repository is on sys.path: only the installed suite and the user's files."""
    pytester.mkpydir("reference").joinpath("__init__.py").write_text("USERS = True\n")
    pytester.mkpydir("userpkg").joinpath("losses.py").write_text(
        "import reference\n"
        "assert reference.USERS, 'the suite shadowed the user package reference'\n"
        "from dualnet_ssl.regression import reference_nt_xent as make_loss\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ssl-loss", "userpkg.losses:make_loss",
                                           "-k", "balance_total or reference_value")
    result.assert_outcomes(passed=2)
