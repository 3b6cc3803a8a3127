"""The helper package is laid out like the course (COURSE.md section 8), and stays that way.

Every import in ``tcv_helpers`` (those inside functions too; only ``if TYPE_CHECKING:`` blocks are
left out) is read with :mod:`ast`, so a lazy import cannot hide a cycle or a backwards step.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tcv_helpers"
# The stage packages in course order: a stage may import the core and earlier stages only.
STAGES = ("data", "model", "deploy", "monitor", "count", "batch")
MAX_LINES = 1000


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The ``tcv_helpers`` modules that ``path`` imports (a package's ``__init__`` counts as itself)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("tcv_helpers"))
            elif (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and (child.module or "").startswith("tcv_helpers")
            ):
                for alias in child.names:  # `from tcv_helpers.data import synth` names a module
                    sub = f"{child.module}.{alias.name}"
                    found.add(sub if sub in modules else child.module)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) - {name} for name, path in files.items()}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in STAGES else None


def test_every_stage_package_exists_and_holds_its_modules():
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), f"tcv_helpers/{stage}/ is missing"
    flat = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    core = {
        "cli",
        "compute",
        "config",
        "doctor",
        "env",
        "imaging",
        "io",
        "project",
        "record",
        "secrets",
        "trust",  # the one check before any weights pickle is loaded, by every stage
        "viz",
    }
    assert set(flat) <= core, (
        f"modules outside a stage package that belong in one: {set(flat) - core}"
    )


def test_no_module_is_over_a_thousand_lines():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these by concern (STYLE.md 2): {long}"


def test_nothing_imports_the_command_line():
    importers = sorted(m for m, deps in _graph().items() if "tcv_helpers.cli" in deps)
    assert not importers, f"these import tcv_helpers.cli: {importers}"


def test_stages_import_only_the_core_and_earlier_stages():
    wrong = []
    for module, deps in _graph().items():
        mine = _stage(module)
        for dep in deps:
            theirs = _stage(dep)
            if theirs is None:
                continue
            if mine is None and module != "tcv_helpers.cli":
                wrong.append(f"core module {module} imports {dep}")
            elif mine is not None and STAGES.index(theirs) > STAGES.index(mine):
                wrong.append(f"{module} ({mine}) imports the later stage {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                connect(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("stage", STAGES)
def test_importing_a_stage_package_imports_none_of_its_modules(stage):
    code = (
        f"import sys, tcv_helpers.{stage}; "
        f"print([m for m in sys.modules if m.startswith('tcv_helpers.{stage}.')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
