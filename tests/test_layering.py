"""Import layering, read from the source as text (ast), so it costs nothing to run:

- theorems/ never imports tests/ (``pytest theorems/`` stands alone; tests may use theorems' helpers);
- the core modules, reference/*.py, never import the subpackages dualnet_ssl.regression, dualnet_ssl.hltm or
  dualnet_ssl.digits (those build on the core, not the other way round). The one exception is the pytest entry
  point, reference/pytest_plugin.py, whose job is to import dualnet_ssl.regression.plugin lazily.
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
