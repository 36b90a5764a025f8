"""What the product imports is what it declares: a `pip install` of it (or `scripts/dev`,
which installs it without the test tools) has every module it imports.

The test tools (the `test` group) are installed beside the product in the suite's own
environment, so a module that imports one of them passes every other test and fails only
on a user's machine; this test reads the imports instead of running them.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
PRODUCT = ROOT / "service" / "tokenbroker"


def _name(text: str) -> str:
    return text.lower().replace("_", "-")


def _declared() -> tuple[set[str], set[str]]:
    """Distributions the product may import: its dependencies (with the extras they are
    installed with), and those of its own extras, which only guarded imports may use."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required: set[str] = set()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        required |= {_name(requirement.name), *map(_name, requirement.extras)}
    optional = {
        _name(Requirement(text).name)
        for texts in project["optional-dependencies"].values()
        for text in texts
    }
    return required, optional


def _catches_import_error(node: ast.Try) -> bool:
    return any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
               for h in node.handlers)  # fmt: skip


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(top-level module, imported only when needed, line) per import of the file: inside
    a function, or under a ``try`` that catches ImportError."""
    tree = ast.parse(path.read_text(), str(path))
    lazy: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or (
            isinstance(node, ast.Try) and _catches_import_error(node)
        ):
            lazy |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(name.split(".")[0], id(node) in lazy, node.lineno) for name in names]
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """Every module the product imports comes with it: a dependency, or one of its extras'
    imported only when needed (inside a function or under an ImportError guard, so the
    product runs without the extra). A module of neither would be there only because the
    test tools brought it."""
    required, optional = _declared()
    owners = packages_distributions()
    problems = []
    for path in sorted(PRODUCT.rglob("*.py")):
        for module, lazy, line in _imports(path):
            if module in sys.stdlib_module_names or module == "tokenbroker":
                continue
            dists = {_name(d) for d in owners.get(module, [])}
            if dists & required:
                continue
            # an extra's module (not installed here: azure-identity) only when needed
            if lazy and (dists & optional or not dists):
                continue
            problems.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({dists})")
    assert problems == []
