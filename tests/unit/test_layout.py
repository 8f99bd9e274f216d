"""The product package holds the product: no test or demo tooling, no import cycles, no private
names reached across modules, and the Airflow glue layered by role."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "include" / "baton"
DEV_ONLY = ("baton_dev", "aiosmtpd", "pytest", "hypothesis", "httpx", "check_jsonschema")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT / "include").with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool) -> list[tuple[str, list[str], int]]:
    """(module imported, names imported from it, line) of every import in *path*."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: list[tuple[str, list[str], int]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


def _product_files() -> list[Path]:
    return sorted(p for p in PRODUCT.rglob("*.py") if "migrations" not in p.parts)


def test_the_product_imports_no_test_or_demo_tooling() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _product_files()
        for module, _names, line in _imports(path, top_level_only=False)
        if module.split(".")[0] in DEV_ONLY
    ]
    assert offenders == []


def test_only_the_store_reaches_for_the_embedded_server() -> None:
    users = {
        str(path.relative_to(PRODUCT))
        for path in _product_files()
        for module, _names, _line in _imports(path, top_level_only=False)
        if module.split(".")[0] == "pgserver"
    }
    assert users == {"store/engine.py"}


def test_runtime_requirements_hold_no_development_tools() -> None:
    names = {
        line.split("==")[0].split("[")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    assert names.isdisjoint({"pgserver", "aiosmtpd", "pytest", "hypothesis", "ruff", "mypy", "httpx"})
    assert {"apache-airflow", "psycopg", "sqlalchemy", "pydantic"} <= names


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: from {module} import {name}"
        for path in [*_product_files(), *(ROOT / "dev").rglob("*.py"), *(ROOT / "dags").glob("*.py")]
        for module, names, line in _imports(path, top_level_only=False)
        if module.split(".")[0] in ("baton", "baton_dev")
        for name in names
        if name.startswith("_")
    ]
    assert offenders == []


def test_the_product_has_no_import_cycle() -> None:
    """Module-level imports between the product's modules form no cycle (imports inside functions,
    which run later, are the way to reach across layers lazily)."""
    modules = {_module(p): p for p in _product_files()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for imported, names, _line in _imports(path, top_level_only=True):
            for target in (imported, *(f"{imported}.{n}" for n in names)):
                if target in modules and target != module:
                    graph[module].add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize(
    ("layer", "may_not_import"),
    [
        ("baton.airflow.hooks", ("baton.airflow.tasks", "baton.airflow.operators", "baton.airflow.dags")),
        ("baton.airflow.tasks", ("baton.airflow.operators", "baton.airflow.dags")),
        ("baton.airflow.operators", ("baton.airflow.dags",)),
        ("baton.airflow.triggers", ("baton.airflow.tasks", "baton.airflow.operators", "baton.airflow.dags")),
    ],
)
def test_airflow_glue_depends_one_way(layer: str, may_not_import: tuple[str, ...]) -> None:
    folder = PRODUCT / Path(*layer.split(".")[1:])
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(folder.rglob("*.py"))
        for module, _names, line in _imports(path, top_level_only=False)
        if module.startswith(may_not_import)
    ]
    assert offenders == []


def test_only_the_airflow_package_imports_airflow() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _product_files()
        if "airflow" not in path.relative_to(PRODUCT).parts[:1]
        for module, _names, line in _imports(path, top_level_only=False)
        if module.split(".")[0] == "airflow"
    ]
    assert offenders == []
