"""The --ssl-loss hook for non-contrastive losses, end to end through the installed plugin (docs/REGRESSION.md,
"Non-contrastive losses"): a correct BYOL loss passes 9 checks (3 properties x batch sizes 6, 19, 64) and writes
the report; its twin without the target's detach fails the stop-gradient at every batch size."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ("pytester",)


def _run(pytester, *args):
    pytester.syspathinsert(ROOT)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def test_byol_loss_passes_through_the_plugin(pytester, tmp_path):
    report = tmp_path / "report.json"
    result = _run(pytester, "--ssl-loss", "examples.mybyol:make_loss", "--ssl-report", str(report))
    result.assert_outcomes(passed=9)
    records = json.loads(report.read_text())["records"]
    assert {r["property"] for r in records} == {"stop_gradient", "reference_value_and_gradient", "float32_accuracy"}


def test_byol_twin_without_detach_fails_the_stop_gradient(pytester):
    result = _run(pytester, "--ssl-loss", "examples.mybyol:make_buggy_loss")
    result.assert_outcomes(passed=6, failed=3)
    result.stdout.fnmatch_lines(["*stop_gradient FAILED*the target is not detached*"])
