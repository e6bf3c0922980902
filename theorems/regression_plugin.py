"""pytest plugin for the regression-check mode (docs/REGRESSION.md): options, subjects, verdicts, the JSON report.

Registered in the root conftest.py (``pytest_plugins = ["theorems.regression_plugin"]``) or with
``-p theorems.regression_plugin``. Without options the checks run on the suite's reference losses and
networks and on the example package in ``examples/``; with ``--ssl-loss`` / ``--ssl-model`` they run on
the user's.
"""
from __future__ import annotations

import datetime
import json
import platform
import re
import shlex

import pytest
import torch

from reference import adapters, probing
from reference.errors import BadInput

BUILTIN_LOSS_SPECS = ("examples.mylosses:make_loss",)
BUILTIN_NET_SPECS = ("examples.mynets:make_net",)
_OPTIONS = ("--ssl-loss", "--ssl-loss-kwargs", "--ssl-loss-declares", "--ssl-model", "--ssl-model-kwargs",
            "--ssl-model-input", "--ssl-seeds")
REPORT_FORMAT = "dualnet-ssl-regression/1"

_RECORDS = pytest.StashKey[list]()
_SUBJECTS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("ssl-regression", "regression-check mode: the theory's properties on your loss and network")
    group.addoption("--ssl-loss", metavar="PKG.MOD:FACTORY", default=None,
                    help="your loss factory; it returns reference.adapters.two_view(...)/per_anchor(...) or a bare "
                         "loss callable declared with --ssl-loss-declares")
    group.addoption("--ssl-loss-kwargs", metavar="JSON", default=None,
                    help="keyword arguments for the loss factory, e.g. '{\"temperature\": 0.2}'")
    group.addoption("--ssl-loss-declares", metavar="JSON", default=None,
                    help="the declaration of a bare loss callable, e.g. '{\"form\": \"two_view\", \"symmetric\": "
                         "false, \"same_view_negatives\": false, \"normalises\": true}'")
    group.addoption("--ssl-model", metavar="PKG.MOD:FACTORY", default=None,
                    help="your network factory (an nn.Module or reference.adapters.NetAdapter)")
    group.addoption("--ssl-model-kwargs", metavar="JSON", default=None,
                    help="keyword arguments for the network factory")
    group.addoption("--ssl-model-input", metavar="JSON", default=None,
                    help="the network's input shape without the batch, e.g. '[3, 32, 32]' (read from a first "
                         "nn.Linear when omitted)")
    group.addoption("--ssl-seeds", type=int, default=1, metavar="K",
                    help="probe every property at K seeds (default 1)")
    group.addoption("--ssl-report", metavar="PATH", default=None,
                    help="write one JSON record per property (status, measured figure, tolerance, seed) to PATH")


def _subject_id(name: str) -> str:
    return re.sub(r"[^\w.]+", "-", name).strip("-")


def _subjects(config) -> dict:
    """The losses and networks to check, loaded once; a bad spec stops the run with the reason."""
    if _SUBJECTS in config.stash:
        return config.stash[_SUBJECTS]
    opt = config.getoption
    try:
        if opt("--ssl-loss"):
            losses = [adapters.load_loss(opt("--ssl-loss"), opt("--ssl-loss-kwargs"), opt("--ssl-loss-declares"))]
        else:
            losses = [adapters.builtin_loss(factory) for factory in
                      (adapters.reference_nt_xent, adapters.reference_simple, adapters.reference_triplet)]
            losses += [adapters.load_loss(spec) for spec in BUILTIN_LOSS_SPECS]
        reference_net = adapters.NetSubject(adapters.reference_mlp().name, adapters.reference_mlp)
        if opt("--ssl-model"):
            nets = [adapters.load_net(opt("--ssl-model"), opt("--ssl-model-kwargs"), opt("--ssl-model-input"))]
        elif opt("--ssl-loss"):
            nets = [reference_net]
        else:
            nets = [reference_net] + [adapters.load_net(spec) for spec in BUILTIN_NET_SPECS]
    except BadInput as err:
        raise pytest.UsageError(f"regression-check mode: {err}") from None
    if opt("--ssl-seeds") < 1:
        raise pytest.UsageError(f"--ssl-seeds must be >= 1, got {opt('--ssl-seeds')}")
    config.stash[_SUBJECTS] = {"losses": losses, "nets": nets}
    return config.stash[_SUBJECTS]


def pytest_configure(config):
    config.stash[_RECORDS] = []
    if config.getoption("--ssl-loss") or config.getoption("--ssl-model"):
        _subjects(config)   # the user's specs: a bad one stops the run here, with the reason, as a usage error


def pytest_generate_tests(metafunc):
    names = metafunc.fixturenames
    if not {"ssl_loss_subject", "ssl_net_subject", "ssl_draw"} & set(names):
        return
    subjects = _subjects(metafunc.config)
    for fixture, key in (("ssl_loss_subject", "losses"), ("ssl_net_subject", "nets")):
        if fixture in names:
            metafunc.parametrize(fixture, subjects[key], ids=[_subject_id(s.name) for s in subjects[key]])
    if "ssl_draw" in names:
        draws = range(metafunc.config.getoption("--ssl-seeds"))
        metafunc.parametrize("ssl_draw", draws, ids=[f"draw{k}" for k in draws])


def _cli(config) -> str:
    """The --ssl-* options of this run, shell-quoted, so a reproduce line can repeat them."""
    parts = []
    for name in _OPTIONS:
        value = config.getoption(name)
        if value is not None and not (name == "--ssl-seeds" and value == 1):
            parts += [name, shlex.quote(str(value))]
    return " ".join(parts)


@pytest.fixture
def ssl_verdict(request, repro):
    """Record a PropertyResult for the report, then pass, fail with its message, or skip as not applicable."""
    def verdict(result: probing.PropertyResult) -> None:
        __tracebackhide__ = True
        command = " ".join(filter(None, [repro().split("reproduce: ", 1)[-1], _cli(request.config)]))
        request.config.stash[_RECORDS].append({**result.record(command), "test": request.node.nodeid})
        if result.status == "fail":
            pytest.fail(f"{result.summary()}; reproduce: {command}", pytrace=False)
        if result.status == "not_applicable":
            pytest.skip(f"not applicable: {result.message}")
    return verdict


def _summary(records: list) -> dict:
    return {status: sum(r["status"] == status for r in records) for status in probing.STATUSES}


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--ssl-report")
    records = session.config.stash.get(_RECORDS, [])
    if not path:
        return
    report = {
        "format": REPORT_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": {name: session.config.getoption(name) for name in _OPTIONS},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "summary": _summary(records),
        "records": records,
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)


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
                                        f"allowed {str(r['tolerance']).split(' (')[0]}, seed {r['seed']}")
