"""Every theorem-checker failure raised from the core goes through ``compare.fail`` (issue 14), read from the source
as text (ast), so it costs nothing to run: in reference/*.py (the subpackages regression, hltm and digits are not
the core) no code builds an ``IdentityViolation`` or a failing ``CheckResult`` except ``fail``'s own record."""
import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "reference"
BUILDERS = {("compare.py", "fail")}
"""(file, function) allowed to build an IdentityViolation: the one helper."""
RECORD_BUILDERS = {("compare.py", "_record"), ("errors.py", "IdentityViolation")}
"""(file, function or class) allowed to build a failing CheckResult: the helper's record, and the exception's
fallback for a text-only failure (raised by the subpackages, not by the core)."""


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


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_checkers_fail_only_through_the_helper(path):
    bad = [f"{owner} (line {call.lineno})" for owner, name, call in _calls(path)
           if name == "IdentityViolation" and (path.name, owner) not in BUILDERS]
    bad += [f"{owner} (line {call.lineno}): a failing CheckResult built by hand" for owner, name, call in _calls(path)
            if name == "CheckResult" and _builds_a_failure(call) and (path.name, owner) not in RECORD_BUILDERS]
    assert not bad, f"{path.name} raises IdentityViolation outside compare.fail: {bad}; call fail(...) instead"


def test_the_scan_sees_a_raise_site():
    """The scan is not blind: it finds the one builder it allows."""
    assert any(name == "IdentityViolation" for owner, name, _ in _calls(CORE / "compare.py") if owner == "fail")
