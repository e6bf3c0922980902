"""pytest plugin for regression-check mode (docs/REGRESSION.md): options, the checks as pytest items, the report.

Installed with the suite (entry point ``pytest11: dualnet_ssl``), so ``--ssl-loss`` and its siblings exist
in any pytest run. Without ``--ssl-loss`` / ``--ssl-model`` the plugin adds nothing. With them it adds one
item per property and draw for the user's subjects; when no test paths are given on the command line it
runs those items alone, so ``pytest --ssl-loss mypkg.losses:make_loss`` in a user's repository checks the
loss and nothing else. Options ``--runslow`` and ``--device`` belong to the suite's own conftest.py, not here.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import re
import shlex
import sys

import pytest
import torch

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.builtin import reference_mlp
from dualnet_ssl.regression.loading import NetSubject, load_loss, load_net
from dualnet_ssl.regression.loss_properties import LOSS_PROPERTIES, check_loss
from dualnet_ssl.regression.network_properties import (COVARIANCE_PROPERTY, NET_PROPERTIES, check_covariance_form,
                                                       check_network)
from dualnet_ssl.results import STATUSES, CheckResult
from dualnet_ssl.seeding import derive_seed

SUBJECT_OPTIONS = ("--ssl-loss", "--ssl-model")
OPTIONS = ("--ssl-loss", "--ssl-loss-kwargs", "--ssl-loss-declares", "--ssl-batch", "--ssl-model",
           "--ssl-model-kwargs", "--ssl-model-input", "--ssl-seeds")
REPORT_FORMAT = "dualnet-ssl-regression/2"

_RECORDS = pytest.StashKey[list]()
_SUBJECTS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("ssl-regression", "regression-check mode: the theory's properties on your loss and network")
    group.addoption("--ssl-loss", metavar="PKG.MOD:FACTORY", default=None,
                    help="your loss factory; it returns dualnet_ssl.regression.two_view(...)/per_anchor(...) or a "
                         "bare loss callable declared with --ssl-loss-declares")
    group.addoption("--ssl-loss-kwargs", metavar="JSON", default=None,
                    help="keyword arguments for the loss factory, e.g. '{\"temperature\": 0.2}'")
    group.addoption("--ssl-loss-declares", metavar="JSON", default=None,
                    help="the declaration of a bare loss callable, e.g. '{\"form\": \"two_view\", \"symmetric\": "
                         "false, \"same_view_negatives\": false, \"normalises\": true}'")
    group.addoption("--ssl-batch", type=int, default=None, metavar="N",
                    help="probe the loss at N samples only (a loss built for one batch size); by default it is "
                         "probed at several sizes, one of them 64 (same as batch_size in the declaration)")
    group.addoption("--ssl-model", metavar="PKG.MOD:FACTORY", default=None,
                    help="your network factory (an nn.Module or dualnet_ssl.regression.NetAdapter)")
    group.addoption("--ssl-model-kwargs", metavar="JSON", default=None,
                    help="keyword arguments for the network factory")
    group.addoption("--ssl-model-input", metavar="JSON", default=None,
                    help="the network's input shape without the batch, e.g. '[3, 32, 32]' (read from a first "
                         "nn.Linear when omitted)")
    group.addoption("--ssl-seeds", type=int, default=1, metavar="K",
                    help="probe every property at K draws (default 1)")
    group.addoption("--ssl-report", metavar="PATH", default=None,
                    help="write one strict-JSON record per property (status, measured figure, tolerance, seed, "
                         "reproduce command) to PATH")


def _active(config) -> bool:
    return any(config.getoption(name) for name in SUBJECT_OPTIONS)


def _load_subjects(config) -> dict:
    """The user's loss and network, loaded once; a bad spec is one usage error that names the cause."""
    opt = config.getoption
    here = str(config.invocation_params.dir)
    if here not in sys.path:
        sys.path.append(here)   # as `python -m pytest` would: the user's package, where pytest is run, is importable
    if opt("--ssl-seeds") < 1:
        raise pytest.UsageError(f"--ssl-seeds must be >= 1, got {opt('--ssl-seeds')}")
    try:
        loss = load_loss(opt("--ssl-loss"), opt("--ssl-loss-kwargs"), opt("--ssl-loss-declares"),
                         opt("--ssl-batch")) if opt("--ssl-loss") else None
        net = load_net(opt("--ssl-model"), opt("--ssl-model-kwargs"), opt("--ssl-model-input")) \
            if opt("--ssl-model") else None
    except BadInput as err:
        raise pytest.UsageError(f"regression-check mode: {err}") from None
    except Exception as err:   # anything else while loading is still the user's input: one usage error, no crash
        raise pytest.UsageError(f"regression-check mode: loading the subjects failed: {type(err).__name__}: "
                                f"{err}") from None
    return {"loss": loss, "net": net}


def pytest_configure(config):
    config.stash[_RECORDS] = []
    if not _active(config):
        return
    config.stash[_SUBJECTS] = _load_subjects(config)
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = []   # no paths given: run the regression checks alone, not the project's own tests


def _cli(config) -> str:
    """The --ssl-* options of this run, shell-quoted, so a reproduce line can repeat them."""
    parts = []
    for name in OPTIONS:
        value = config.getoption(name)
        if value is not None and not (name == "--ssl-seeds" and value == 1):
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
    checks = []
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
    items = []
    for draw in range(parent.config.getoption("--ssl-seeds")):
        for group, prop, check in checks:
            items.append(RegressionCheck.from_parent(parent, name=f"{group}::{prop}[draw{draw}]", check=check,
                                                     prop=prop, draw=draw))
    return items


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    if not _active(config):
        return
    collector = RegressionChecks.from_parent(session, name="ssl-regression", nodeid="ssl-regression")
    checks = collector.collect()
    session.ihook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, checks))
    items.extend(checks)   # tryfirst: -k and -m deselection then see these items too


def _summary(records: list) -> dict:
    return {status: sum(r["status"] == status for r in records) for status in STATUSES}


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--ssl-report")
    if not path:
        return
    records = session.config.stash.get(_RECORDS, [])
    report = {
        "format": REPORT_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": {name: session.config.getoption(name) for name in OPTIONS},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "summary": _summary(records),
        "records": records,
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)   # strict JSON: records hold null, never NaN


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    counts = _summary(records)
    path = config.getoption("--ssl-report")
    terminalreporter.write_sep("-", "ssl regression check")
    terminalreporter.write_line(", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
                                + (f"; report written to {path}" if path else ""))
    for r in records:
        if r["status"] == "fail":
            on = r["subject"] + (f" on {r['network']}" if r["network"] else "")
            figure = "n/a" if r["measured"] is None else f"{r['measured']:.3e}"
            terminalreporter.write_line(f"FAILED {r['property']} for {on}: measured {figure}, "
                                        f"allowed {r['tolerance']}, seed {r['seed']}")
