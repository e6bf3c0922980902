"""Every theorem-checker failure goes through ``compare.fail`` (issue 14), read from the source as text (ast), so it
costs nothing to run: in reference/ and its subpackages hltm, digits and regression, no code builds an
``IdentityViolation`` or a failing ``CheckResult`` except ``fail``'s own record (and the regression properties'
one record builder, ``verdicts.run_check``)."""
import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "reference"
BUILDERS = {("compare.py", "fail"), ("compare.py", "raise_failure")}
"""(file, function) allowed to build an IdentityViolation: the helper, and its twin for a record a classifier built."""
RECORD_BUILDERS = {("compare.py", "_record"), ("errors.py", "IdentityViolation"),
                   ("regression/verdicts.py", "run_check")}
"""(file, function or class) allowed to build a failing CheckResult: the helper's record, and the exception's
fallback for a text-only failure (no checker raises one now), and the regression properties' one record builder."""


def _calls(path: Path):
    """(enclosing top-level function or class, called name, call) for every call of a name or an attribute
    (``errors.IdentityViolation(...)``) in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for top in tree.body:
        owner = getattr(top, "name", "<module>")
        for node in ast.walk(top):
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
                yield owner, node.func.id if isinstance(node.func, ast.Name) else node.func.attr, node


def _builds_a_failure(call: ast.Call) -> bool:
    return any(k.arg == "status" and isinstance(k.value, ast.Constant) and k.value.value == "fail"
               for k in call.keywords)


CHECKERS = sorted([*CORE.glob("*.py"), *CORE.glob("hltm/*.py"), *CORE.glob("digits/*.py"), *CORE.glob("regression/*.py")])
"""The core and every subpackage: the hltm and digits checkers fail through ``fail`` too; the regression
properties return CheckResults from their verdicts and build no failure by hand."""


@pytest.mark.parametrize("path", CHECKERS, ids=lambda p: str(p.relative_to(CORE)))
def test_core_checkers_fail_only_through_the_helper(path):
    module = str(path.relative_to(CORE))
    calls = list(_calls(path))
    bad = [f"{owner} (line {call.lineno})" for owner, called, call in calls
           if called == "IdentityViolation" and (module, owner) not in BUILDERS]
    bad += [f"{owner} (line {call.lineno}): a failing CheckResult built by hand" for owner, called, call in calls
            if called == "CheckResult" and _builds_a_failure(call) and (module, owner) not in RECORD_BUILDERS]
    assert not bad, f"{module} builds a failure outside compare.fail: {bad}; call fail(...) instead"


def test_the_scan_sees_a_raise_site():
    """The scan is not blind: it finds the one builder it allows."""
    assert any(name == "IdentityViolation" for owner, name, _ in _calls(CORE / "compare.py") if owner == "fail")
