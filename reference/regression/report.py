"""The --ssl-report JSON: one strict-JSON record per property and draw, assembled and written (docs/REGRESSION.md).

``summary`` counts the records (one per property, subject and draw, so K draws count K times); ``property_summary``
counts each property of each subject once over its draws, with the float32 findings.

Before writing, the report goes through the hook ``pytest_ssl_report_update_json(config, report)``
(``dualnet_ssl.pytest_hookspecs``), so a user's conftest.py or plugin can add fields to it.
"""
from __future__ import annotations

import datetime
import json
import platform

import torch

from dualnet_ssl.pytest_plugin import OPTIONS
from dualnet_ssl.results import STATUSES

REPORT_FORMAT = "dualnet-ssl-regression/2"


def summary(records: list) -> dict:
    """How many records have each status, every status named (zero included)."""
    return {status: sum(r["status"] == status for r in records) for status in STATUSES}


def property_summary(records: list) -> dict:
    """Per property and subject (its draws together): fail if any draw failed, pass if any passed and none failed,
    else not applicable; ``findings`` counts the properties with a float32 finding below the declared tau."""
    by_property: dict = {}
    for r in records:
        by_property.setdefault((r["property"], r["subject"], r["network"]), []).append(r)
    counts = {status: 0 for status in STATUSES}
    findings = 0
    for draws in by_property.values():
        statuses = {d["status"] for d in draws}
        counts["fail" if "fail" in statuses else "pass" if "pass" in statuses else "not_applicable"] += 1
        findings += any((d.get("details") or {}).get("finding") for d in draws)
    return {"properties": len(by_property), **counts, "float32_findings": findings}


def build_report(config, records: list) -> dict:
    """The report of this run: format, time, the --ssl-* options, versions, the summary and the records."""
    return {
        "format": REPORT_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": {name: config.getoption(name) for name in OPTIONS},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "summary": summary(records),
        "property_summary": property_summary(records),
        "records": records,
    }


def write_report(config, path: str, records: list) -> dict:
    """Build the report, let ``pytest_ssl_report_update_json`` implementations amend it, write it to ``path``."""
    report = build_report(config, records)
    config.hook.pytest_ssl_report_update_json(config=config, report=report)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)   # strict JSON: records hold null, never NaN
    return report
