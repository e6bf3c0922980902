"""The installed entry point is cheap: a pytest run without --ssl-* options never imports torch or the
regression machinery; with them, the checks, the report and its user hook work as before.

Subprocesses where sys.modules must start clean (this suite's own conftest.py has imported torch already),
run in a temporary folder outside the repository, so only the installed suite is importable.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "dualnet_ssl.pytest_plugin"

pytest_plugins = ("pytester",)


def _clean_env() -> dict:
    """The environment without anything that would put the repository on sys.path or change plugin loading."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    return env


def _python(cwd, *args, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_the_entry_point_is_this_module():
    from importlib.metadata import entry_points
    found = [ep.value for ep in entry_points(group="pytest11") if ep.name == "dualnet_ssl"]
    assert found == [ENTRY], f"pytest11 entry point dualnet_ssl: {found} (reinstall: pip install -e .)"


def test_importing_the_entry_point_imports_no_torch(tmp_path):
    code = (f"import {ENTRY}, dualnet_ssl.pytest_hookspecs, sys; "
            "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('dualnet_ssl.regression')); "
            "assert not heavy, heavy")
    done = _python(tmp_path, "-c", code)
    assert done.returncode == 0, done.stderr


CONFTEST = '''
import json
import sys


def pytest_sessionfinish(session):
    with open("seen.json", "w") as handle:
        json.dump({"torch": "torch" in sys.modules,
                   "regression": sorted(m for m in sys.modules if m.startswith("dualnet_ssl.regression")),
                   "entry_point_loaded": session.config.pluginmanager.has_plugin("dualnet_ssl"),
                   "heavy_registered": session.config.pluginmanager.has_plugin("dualnet_ssl-regression"),
                   "ssl_loss": session.config.getoption("--ssl-loss")}, handle)
'''


def test_a_pytest_run_without_ssl_options_imports_no_torch(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_users_own.py").write_text("def test_own():\n    assert True\n")
    done = _python(tmp_path, "-m", "pytest", "-p", "no:cacheprovider", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["entry_point_loaded"] and seen["ssl_loss"] is None, f"the plugin was not loaded: {seen}"
    assert not seen["torch"] and not seen["regression"] and not seen["heavy_registered"], seen


def _run(pytester, *args):
    """The installed plugin (entry point), in-process, in a fresh directory that can import examples/."""
    pytester.syspathinsert(ROOT)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def test_a_user_hook_adds_a_field_to_the_report(pytester, tmp_path):
    pytester.makeconftest('''
def pytest_ssl_report_update_json(config, report):
    report["ci"] = {"job": "nightly", "records_seen": len(report["records"])}
''')
    report = tmp_path / "report.json"
    result = _run(pytester, "--ssl-loss", "examples.mylosses:make_loss", "-k", "balance_total",
                  "--ssl-report", str(report))
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    data = json.loads(report.read_text())
    assert data["ci"] == {"job": "nightly", "records_seen": 1}, data.get("ci")
    assert data["format"] == "dualnet-ssl-regression/2" and data["summary"]["pass"] == 1, data["summary"]


def test_the_heavy_plugin_is_registered_only_with_ssl_options(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_users_own="def test_own():\n    assert True\n")
    _run(pytester).assert_outcomes(passed=1)
    assert not json.loads((pytester.path / "seen.json").read_text())["heavy_registered"]
    _run(pytester, "--ssl-loss", "examples.mylosses:make_loss", "-k", "balance_total").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "seen.json").read_text())["heavy_registered"]


def test_a_report_without_subjects_is_written_empty(pytester, tmp_path):
    """As before the plugin was split: --ssl-report alone writes a report with no records."""
    pytester.makepyfile(test_users_own="def test_own():\n    assert True\n")
    report = tmp_path / "report.json"
    _run(pytester, "--ssl-report", str(report)).assert_outcomes(passed=1)
    data = json.loads(report.read_text())
    assert data["records"] == [] and sum(data["summary"].values()) == 0, data
