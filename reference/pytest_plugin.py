"""The suite's pytest entry point (``pytest11: dualnet_ssl``): the --ssl-* options, and nothing heavy.

Installing the suite loads this module in every pytest run of the user's environment, so at import time it
reads pytest and the standard library only, never torch. It registers the options and the hookspecs of
``dualnet_ssl.pytest_hookspecs``; only when a run names a subject (--ssl-loss / --ssl-model) or a report
(--ssl-report) does ``pytest_configure`` import the regression machinery, ``dualnet_ssl.regression.plugin``,
and register it as a second plugin (its items, the JSON report and the terminal summary).
Options ``--runslow`` and ``--device`` belong to the suite's own conftest.py, not here.
"""
from __future__ import annotations

from dualnet_ssl import pytest_hookspecs

SUBJECT_OPTIONS = ("--ssl-loss", "--ssl-model")
OPTIONS = ("--ssl-loss", "--ssl-loss-kwargs", "--ssl-loss-declares", "--ssl-batch", "--ssl-model",
           "--ssl-model-kwargs", "--ssl-model-input", "--ssl-seeds", "--ssl-strict-float32", "--ssl-world-size")
REPORT_OPTION = "--ssl-report"


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(pytest_hookspecs)


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
    group.addoption("--ssl-strict-float32", action="store_true", default=False,
                    help="fail stability_float32 on a float32 finding below the declared temperature(s) too (by "
                         "default it is a warning and a report entry; same as strict_float32 in the declaration)")
    group.addoption("--ssl-world-size", metavar="W[,W...]", default=None,
                    help="also run the loss in W real torch.distributed processes (gloo) and check that each rank's "
                         "gradient / W equals the single-process rows (property distributed_gradient), e.g. '2,4'")
    group.addoption(REPORT_OPTION, metavar="PATH", default=None,
                    help="write one strict-JSON record per property (status, measured figure, tolerance, seed, "
                         "reproduce command) to PATH")


def active(config) -> bool:
    """Whether this run names a subject, i.e. has regression checks to run."""
    return any(config.getoption(name) for name in SUBJECT_OPTIONS)


def pytest_configure(config):
    if not (active(config) or config.getoption(REPORT_OPTION)):
        return   # a plain pytest run: nothing of the regression machinery (nor torch) is imported
    from dualnet_ssl.regression import plugin as heavy   # here, not at the top: it imports torch
    if not config.pluginmanager.is_registered(heavy):
        # Registered during pytest_configure, the plugin still receives pytest_configure (a historic hook).
        config.pluginmanager.register(heavy, "dualnet_ssl-regression")
