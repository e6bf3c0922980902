"""The regression checks as a pytest plugin (docs/REGRESSION.md): the items, the report, the terminal summary.

Not an entry point itself: the suite's entry point, ``dualnet_ssl.pytest_plugin``, registers the --ssl-*
options and imports this module (and with it torch) only when a run names a subject or a report. Then this
module adds one item per property and draw for the user's subjects; when no test paths are given on the
command line it runs those items alone, so ``pytest --ssl-loss mypkg.losses:make_loss`` in a user's
repository checks the loss and nothing else. The JSON report is assembled in ``report``.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import sys
import warnings

import pytest

from dualnet_ssl.errors import BadInput
from dualnet_ssl.pytest_plugin import OPTIONS, REPORT_OPTION, active
from dualnet_ssl.regression.builtin import reference_mlp
from dualnet_ssl.regression.distributed import DISTRIBUTED_PROPERTY, check_distributed, declared_world_sizes
from dualnet_ssl.regression.loading import NetSubject, load_loss, load_net
from dualnet_ssl.regression.noncontrastive import load_noncontrastive, plugin_checks
from dualnet_ssl.regression.loss_properties import LOSS_PROPERTIES, check_loss
from dualnet_ssl.regression.precision import Float32Finding, finding_text
from dualnet_ssl.regression.network_properties import (COVARIANCE_PROPERTY, NET_PROPERTIES, check_covariance_form,
                                                       check_network)
from dualnet_ssl.regression.report import REPORT_FORMAT, property_summary, summary, write_report  # noqa: F401 (REPORT_FORMAT: re-exported)
from dualnet_ssl.results import CheckResult
from dualnet_ssl.seeding import derive_seed

_RECORDS = pytest.StashKey[list]()
_SUBJECTS = pytest.StashKey[dict]()


def _load_subjects(config) -> dict:
    """The user's loss and network, loaded once; a bad spec is one usage error that names the cause."""
    opt = config.getoption
    here = str(config.invocation_params.dir)
    if here not in sys.path:
        sys.path.append(here)   # as `python -m pytest` would: the user's package, where pytest is run, is importable
    if opt("--ssl-seeds") < 1:
        raise pytest.UsageError(f"--ssl-seeds must be >= 1, got {opt('--ssl-seeds')}")
    try:
        noncontrastive = load_noncontrastive(opt("--ssl-loss"), opt("--ssl-loss-kwargs")) if opt("--ssl-loss") else None
        loss = load_loss(opt("--ssl-loss"), opt("--ssl-loss-kwargs"), opt("--ssl-loss-declares"),
                         opt("--ssl-batch"), opt("--ssl-strict-float32")) \
            if opt("--ssl-loss") and noncontrastive is None else None
        net = load_net(opt("--ssl-model"), opt("--ssl-model-kwargs"), opt("--ssl-model-input")) \
            if opt("--ssl-model") else None
    except BadInput as err:
        raise pytest.UsageError(f"regression-check mode: {err}") from None
    except Exception as err:   # anything else while loading is still the user's input: one usage error, no crash
        raise pytest.UsageError(f"regression-check mode: loading the subjects failed: {type(err).__name__}: "
                                f"{err}") from None
    try:
        world_sizes = declared_world_sizes(loss, opt("--ssl-world-size")) if loss is not None else ()
    except BadInput as err:
        raise pytest.UsageError(f"regression-check mode: {err}") from None
    return {"loss": loss, "net": net, "noncontrastive": noncontrastive, "world_sizes": world_sizes}


def pytest_configure(config):
    config.stash[_RECORDS] = []
    if not active(config):
        return
    config.stash[_SUBJECTS] = _load_subjects(config)
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = []   # no paths given: run the regression checks alone, not the project's own tests


def _cli(config) -> str:
    """The --ssl-* options of this run, shell-quoted, so a reproduce line can repeat them."""
    parts = []
    for name in OPTIONS:
        value = config.getoption(name)
        if isinstance(value, bool):
            parts += [name] if value else []   # a flag: named when on
        elif value is not None and not (name == "--ssl-seeds" and value == 1):
            parts += [name, shlex.quote(str(value))]
    return " ".join(parts)


def _slug(name: str) -> str:
    return re.sub(r"[^\w.]+", "-", name).strip("-")


class RegressionFailure(AssertionError):
    """A regression property failed; ``result`` is its CheckResult."""

    def __init__(self, result: CheckResult):
        super().__init__(result.summary())
        self.result = result


def assert_result(result: CheckResult) -> None:
    """Pass, fail with the result's summary, or skip as not applicable (with the reason)."""
    __tracebackhide__ = True
    if result.status == "fail":
        raise RegressionFailure(result)
    if result.status == "not_applicable":
        pytest.skip(f"not applicable: {result.message}")


class RegressionCheck(pytest.Item):
    """One property of the user's subject at one draw; records its CheckResult for the report."""

    def __init__(self, *, check, prop: str, draw: int, **kwargs):
        super().__init__(**kwargs)
        self._check = check
        self.prop, self.draw = prop, draw

    @property
    def reproduce(self) -> str:
        draws = f" and draw{self.draw}" if self.config.getoption("--ssl-seeds") > 1 else ""
        return f"pytest {_cli(self.config)} -k '{self.prop}{draws}'"

    def runtest(self):
        seed = derive_seed(self.draw, self.prop)
        result = dataclasses.replace(self._check(seed), reproduce=self.reproduce)
        self.config.stash[_RECORDS].append({**result.record(), "test": self.nodeid})
        finding = (result.details or {}).get("finding")
        if finding is not None and result.status == "pass":
            warnings.warn(Float32Finding(f"{result.subject}: {finding_text(finding)} (below the declared "
                                         "temperature; --ssl-strict-float32 makes it a failure)"))
        assert_result(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, RegressionFailure):
            return excinfo.value.result.summary()
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.name


class RegressionChecks(pytest.Collector):
    """The regression checks of this run: one item per property and draw."""

    def collect(self):
        return _items(self)


def _items(parent) -> list:
    subjects = parent.config.stash[_SUBJECTS]
    loss, net = subjects["loss"], subjects["net"]
    checks = [] if subjects.get("noncontrastive") is None else plugin_checks(subjects["noncontrastive"])
    if loss is not None:
        checks += [(f"loss[{_slug(loss.name)}]", prop,
                    lambda seed, p=prop: check_loss(loss, p, seed)) for prop in LOSS_PROPERTIES]
    if net is not None:
        checks += [(f"network[{_slug(net.name)}]", prop,
                    lambda seed, p=prop: check_network(net, p, seed)) for prop in NET_PROPERTIES]
    if loss is not None:
        on = net or NetSubject(reference_mlp().name, reference_mlp)
        checks.append((f"loss[{_slug(loss.name)}]-on[{_slug(on.name)}]", COVARIANCE_PROPERTY,
                       lambda seed: check_covariance_form(loss, on, seed)))
    if loss is not None:
        checks += [(f"loss[{_slug(loss.name)}]", f"{DISTRIBUTED_PROPERTY}_W{w}",
                    lambda seed, w=w: check_distributed(loss, w, seed))
                   for w in subjects.get("world_sizes", ())]
    items = []
    for draw in range(parent.config.getoption("--ssl-seeds")):
        for group, prop, check in checks:
            items.append(RegressionCheck.from_parent(parent, name=f"{group}::{prop}[draw{draw}]", check=check,
                                                     prop=prop, draw=draw))
    return items


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    if not active(config):
        return
    collector = RegressionChecks.from_parent(session, name="ssl-regression", nodeid="ssl-regression")
    checks = collector.collect()
    session.ihook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, checks))
    items.extend(checks)   # tryfirst: -k and -m deselection then see these items too


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption(REPORT_OPTION)
    if path:
        write_report(session.config, path, session.config.stash.get(_RECORDS, []))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    counts = summary(records)
    path = config.getoption(REPORT_OPTION)
    terminalreporter.write_sep("-", "ssl regression check")
    props = property_summary(records)
    per = "" if props["properties"] == len(records) else f" (records: {props['properties']} properties, several draws)"
    findings = f"; {props['float32_findings']} float32 finding(s) below the declared tau (warnings above)" \
        if props["float32_findings"] else ""
    terminalreporter.write_line(", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
                                + per + findings + (f"; report written to {path}" if path else ""))
    for r in records:
        if r["status"] == "fail":
            on = r["subject"] + (f" on {r['network']}" if r["network"] else "")
            figure = "n/a" if r["measured"] is None else f"{r['measured']:.3e}"
            terminalreporter.write_line(f"FAILED {r['property']} for {on}: measured {figure}, "
                                        f"allowed {r['tolerance']}, seed {r['seed']}")
