"""Hooks the regression-check plugin offers to a user's conftest.py or plugin (docs/REGRESSION.md, "the report").

Imports pytest only, so the plugin's entry point can add these specs without importing torch.
"""
import pytest


@pytest.hookspec
def pytest_ssl_report_update_json(config, report):
    """Add or change fields of the --ssl-report JSON before it is written (as pytest-benchmark's
    ``pytest_benchmark_update_json``). ``report`` is the dict written to the file; modify it in place.
    Every value must be strict JSON (no NaN or infinity): the writer refuses them."""
