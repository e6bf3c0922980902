"""Import layering, read from the source as text (ast), so it costs nothing to run:

- theorems/ never imports tests/ (``pytest theorems/`` stands alone; tests may use theorems' helpers);
- the core modules, reference/*.py, never import the subpackages dualnet_ssl.regression, dualnet_ssl.hltm or
  dualnet_ssl.digits (those build on the core, not the other way round). The one exception is the pytest entry
  point, reference/pytest_plugin.py, whose job is to import dualnet_ssl.regression.plugin lazily;
- in reference/regression/, only engine.py calls a declared loss's ``.fn(`` (the distributed worker and the
  non-contrastive wing, with its own declaration type, excepted).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("regression", "hltm", "digits")
ENTRY_POINT = "pytest_plugin.py"


def imported_names(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names in ``path``, at any depth (functions included),
    plus ``pkg.name`` for ``from pkg import name`` (name may be a submodule) and string arguments of
    ``importlib.import_module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative import: resolve against the file's package
                package = path.parent.relative_to(ROOT).parts
                base = ".".join(package[:len(package) - node.level + 1] + ((node.module,) if node.module else ()))
            else:
                base = node.module
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", sorted((ROOT / "theorems").rglob("*.py")), ids=lambda p: p.name)
def test_theorems_never_import_tests(path):
    bad = sorted(n for n in imported_names(path) if _within(n, "tests"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: theorems/ must run without tests/"


CORE = sorted(p for p in (ROOT / "reference").glob("*.py") if p.name != ENTRY_POINT)


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_modules_never_import_the_subpackages(path):
    subpackages = [f"dualnet_ssl.{s}" for s in SUBPACKAGES] + [f"reference.{s}" for s in SUBPACKAGES]
    bad = sorted(n for n in imported_names(path) if any(_within(n, s) for s in subpackages))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the core must not depend on its subpackages"


def test_the_checker_sees_imports():
    """The layering tests are not vacuous: the parser finds the entry point's lazy import and a theorem's imports."""
    assert "dualnet_ssl.regression.plugin" in imported_names(ROOT / "reference" / ENTRY_POINT)
    assert "dualnet_ssl.regression" in imported_names(ROOT / "theorems" / "test_regression.py")
    assert len(CORE) >= 10, CORE


REGRESSION = ROOT / "reference" / "regression"
CALLS_USER_CODE = {"engine.py": "the one door to a declared loss",
                   "distributed.py": "the multi-process engine's worker",
                   "noncontrastive.py": "its own declaration type, NonContrastiveLoss"}


def fn_calls(path: Path) -> list[int]:
    """The lines of ``path`` that call a declaration's ``.fn(...)`` (a Call whose func is an Attribute named fn)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fn")


@pytest.mark.parametrize("path", sorted(REGRESSION.glob("*.py")), ids=lambda p: p.name)
def test_only_the_engine_calls_the_users_loss(path):
    """One door to user code (issue 14): in reference/regression/, only engine.py calls a declared loss's ``fn``
    (besides the distributed worker and the non-contrastive wing, CALLS_USER_CODE); the rest goes through
    ``engine.evaluate`` and its neighbours."""
    if path.name in CALLS_USER_CODE:
        return
    lines = fn_calls(path)
    assert not lines, (f"{path.relative_to(ROOT)} calls .fn( at lines {lines}: call the loss through "
                       "dualnet_ssl.regression.engine (evaluate, with_inputs, first_call)")


def test_the_door_checker_sees_calls():
    """Not vacuous: the checker finds the engine's own call, and every exempt module still exists."""
    assert fn_calls(REGRESSION / "engine.py")
    assert all((REGRESSION / name).exists() for name in CALLS_USER_CODE)


def test_the_engine_imports_no_module_that_imports_it():
    """The engine sits below its callers: no module it imports (of reference/regression/) imports it back."""
    engine = "dualnet_ssl.regression.engine"
    below = {n for n in imported_names(REGRESSION / "engine.py") if _within(n, "dualnet_ssl.regression")}
    back = sorted(p.name for p in REGRESSION.glob("*.py")
                  if f"dualnet_ssl.regression.{p.stem}" in below and engine in imported_names(p))
    assert below and not back, f"engine.py imports {back}, which import it back"
