"""Real peers from the package registry (optional extra ``peers``; docs/REGRESSION.md).

Correct NT-Xent / InfoNCE implementations pass every property at any seed and temperature (zero false
alarms). One real finding is expected: pytorch-metric-learning's NTXentLoss computes
``log(num/den + finfo.tiny)``, so in float32 the positive's log-share saturates at log(tiny) once it falls below
tiny (each positive opposite its anchor, small tau), and its float32 pair weights vanish where float64's do not:
a saturating cap: ``stability_float32`` fails at a declared tau of 0.02 (where it is wrong), and at a declared tau
above it passes with a float32 finding (smallest safe tau, cause) unless strict float32 is asked for. pytorch-metric-learning's TripletMarginLoss, whose default distance is the Euclidean distance
and not its square, is reported as not balanced, never crashes and never passes. Each test skips, with
the install command, when its peer is absent.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualnet_ssl import regression

PEERS = {
    "pml_ntxent_symmetric": ("pytorch_metric_learning", regression.pml_ntxent, {"symmetric": True}),   # see above
    "pml_ntxent_one_directional": ("pytorch_metric_learning", regression.pml_ntxent, {"symmetric": False}),
    "info_nce_two_view": ("info_nce", regression.info_nce, {}),
    "info_nce_per_anchor_values": ("info_nce", regression.info_nce, {"reduction": "none"}),
    "info_nce_unpaired_negatives": ("info_nce", regression.info_nce, {"negatives": "unpaired", "reduction": "sum"}),
    "info_nce_paired_negatives": ("info_nce", regression.info_nce, {"negatives": "paired", "reduction": "none"}),
    "lightly_ntxent": ("lightly", regression.lightly_ntxent, {}),
}
SEEDS = st.integers(min_value=0, max_value=2 ** 31 - 1)
TEMPERATURES = st.sampled_from([0.02, 0.07, 0.1, 0.5, 1.0])
SATURATES = ("pml_ntxent_symmetric", "pml_ntxent_one_directional")
"""Real findings, not false alarms: peers whose float32 pair weights are grossly wrong at some tau on the grid."""


def require(module: str) -> None:
    hint = regression.LIGHTLY_HINT if module == "lightly" else regression.PEERS_HINT
    pytest.importorskip(module, reason=f"peer '{module}' is not installed: {hint}")


def peer(name: str, temperature: float) -> regression.LossSubject:
    module, factory, kwargs = PEERS[name]
    require(module)
    return regression.LossSubject(factory(temperature=temperature, **kwargs).name, factory,
                                {"temperature": temperature, **kwargs})


@pytest.mark.parametrize("name", sorted(PEERS))
@settings(max_examples=4)   # each example probes every property at three batch sizes; the slow sweep below does more
@given(seed=SEEDS, tau=TEMPERATURES)
def test_correct_peer_passes_every_property(name, seed, tau):
    _check_peer(name, seed, tau)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PEERS))
@settings(max_examples=25)
@given(seed=SEEDS, tau=TEMPERATURES)
def test_correct_peer_passes_every_property_sweep(name, seed, tau):
    _check_peer(name, seed, tau)


SATURATES_AT = 0.02
"""pytorch-metric-learning's cap saturates in float32 from tau = 0.02 (symmetric form) or 0.01 (one-directional)
down, on the orthogonal inverted points: at a declared tau where it bites that fails; above it, it is a finding
(smallest safe tau, cause); either way the cause named is the cap."""


def _check_peer(name, seed, tau):
    results = {prop: regression.check_loss(peer(name, tau), prop, seed) for prop in regression.LOSS_PROPERTIES}
    float32 = results["stability_float32"]
    if name in SATURATES:
        details = float32.details or {}
        cause = details.get("cause") if float32.status == "fail" else (details.get("finding") or {}).get("cause")
        assert cause == "saturating_cap" and (float32.status == "pass" or tau <= SATURATES_AT), (
            f"{name} at declared tau={tau}: the saturation must be failed at a declared tau where it bites "
            f"(<= {SATURATES_AT}) and a finding above it, naming the cap, at seed={seed}: {float32.summary()}")
    findings = {"stability_float32"} if name in SATURATES and tau <= SATURATES_AT else set()
    failed = [r.summary() for p, r in results.items() if r.status == "fail" and p not in findings]
    assert not failed, f"false alarms on {name} at seed={seed}, tau={tau}: {failed}"
    # the checks that matter ran, rather than passing by being not applicable
    must_run = ["balance_total", "weight_signs", "reference_value", "reference_weights", "stability_float32"]
    must_run = [p for p in must_run if p not in findings]
    must_run += ["balance_per_anchor"] if PEERS[name][2].get("reduction") == "none" else []
    skipped = {p: results[p].message for p in must_run if results[p].status != "pass"}
    assert not skipped, f"{name} at seed={seed}, tau={tau}: checks that should have run did not: {skipped}"


@given(seed=SEEDS)
def test_triplet_margin_loss_is_reported_not_balanced(seed):
    require("pytorch_metric_learning")
    subject = regression.builtin_loss(regression.pml_triplet)
    results = {prop: regression.check_loss(subject, prop, seed) for prop in regression.LOSS_PROPERTIES}
    balance = results["balance_total"]
    assert balance.status == "fail" and "not balanced" in balance.summary(), (
        f"TripletMarginLoss was not reported as not balanced at seed={seed}: {balance.summary()}")
    crashed = [r.summary() for r in results.values() if "could not run" in r.message]
    assert not crashed, f"checks crashed on TripletMarginLoss at seed={seed}: {crashed}"
    wrong = {p: r.summary() for p, r in results.items() if r.status == "fail" and p != "balance_total"}
    assert not wrong, f"TripletMarginLoss has pair structure and the right signs; yet at seed={seed}: {wrong}"


@pytest.mark.parametrize("name", ["pml_ntxent_symmetric", "info_nce_two_view"])
def test_covariance_form_says_not_applicable_for_normalising_peers(name, seed, repro):
    net = regression.NetSubject(regression.reference_mlp().name, regression.reference_mlp)
    result = regression.check_covariance_form(peer(name, 0.1), net, seed)
    assert result.status == "not_applicable" and "normalises" in result.message, f"{result.summary()}; {repro()}"


def test_bare_peer_class_with_command_line_declaration(seed, repro):
    """--ssl-loss info_nce:InfoNCE with --ssl-loss-kwargs and --ssl-loss-declares, no code written."""
    require("info_nce")
    subject = regression.load_loss(
        "info_nce:InfoNCE", '{"temperature": 0.2, "reduction": "none"}',
        '{"form": "two_view", "symmetric": false, "same_view_negatives": false, "reduction": "none", '
        '"normalises": true, "reference": "infonce", "temperature_kwarg": "temperature"}')
    assert subject.build().temperature == 0.2, f"temperature not taken from the kwargs; {repro()}"
    results = [regression.check_loss(subject, prop, seed) for prop in regression.LOSS_PROPERTIES]
    assert all(r.status == "pass" for r in results), [r.summary() for r in results if r.status != "pass"]


def test_mismatched_declaration_is_reported(seed, repro):
    """InfoNCE (one-directional, cross-view negatives) declared with SimCLR's layout fails, it does not pass."""
    require("info_nce")
    import info_nce
    wrong = regression.LossSubject("InfoNCE declared as SimCLR", lambda temperature: regression.two_view(
        info_nce.InfoNCE(temperature=temperature), normalises=True, reference="infonce", temperature=temperature),
        {"temperature": 0.1})
    result = regression.check_loss(wrong, "reference_value", seed)
    assert result.status == "fail", f"mis-declared layout passed: {result.summary()}; {repro()}"


def test_strict_float32_turns_the_pml_finding_into_a_failure(seed, repro):
    """Declared strict (the CLI's --ssl-strict-float32), the saturation below a declared tau of 0.1 fails, naming the
    cause and the smallest safe tau; the failure's text never says it was not failed."""
    require("pytorch_metric_learning")
    subject = regression.LossSubject("pml strict", regression.pml_ntxent, {"temperature": 0.1}, strict_float32=True)
    result = regression.check_loss(subject, "stability_float32", seed)
    assert result.status == "fail" and result.details["finding"]["cause"] == "saturating_cap", (
        f"{result.summary()}; {repro()}")
    assert "strict" in result.message and "not failed" not in result.message, result.summary()
