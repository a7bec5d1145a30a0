"""The import graph of the package: no circle, and the floors in order (docs/architecture.md).

Read from the source with ``ast``: every import counts, at module level or inside a function (a lazy
import is still a dependency), except those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "jobprogress"

# Lower floors never import higher ones. Within the core: the tracker hands work to the runtime, the
# runtime owns the reporter, the reporter feeds the mailboxes, the mailboxes drive the sinks.
CORE_FLOORS = [
    ["jobprogress", "jobprogress.testing", "jobprogress._pytest_plugin", "jobprogress.contrib"],
    ["jobprogress._tracker"],
    ["jobprogress._runtime"],
    ["jobprogress._reporter"],
    ["jobprogress._mailbox"],
    ["jobprogress._plugins", "jobprogress.sinks"],
]
# The rooms: the CLI and the collector read and write through the store, which builds on the core.
ROOMS = [
    ["jobprogress.cli", "jobprogress.server"],
    ["jobprogress.store"],
]
FOUNDATIONS = [
    "jobprogress._states",
    "jobprogress._log",
    "jobprogress.errors",
    "jobprogress._forklock",
    "jobprogress._text",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports when it runs."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("jobprogress"):
                        found.add(resolve(alias.name) or alias.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    stem = ".".join([*base, child.module] if child.module else base)
                else:
                    stem = child.module or ""
                if not stem.startswith("jobprogress"):
                    continue
                for alias in child.names:
                    target = resolve(f"{stem}.{alias.name}")
                    found.add(target if target is not None and target != stem else (resolve(stem) or stem))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(SRC.rglob("*.py"))
    # Compiled modules (the optional accelerator) are modules too, with nothing of the package inside.
    compiled = {f"jobprogress.{path.name.split('.')[0]}" for path in SRC.glob("*.so")} | {
        "jobprogress._speedups"
    }
    known = {module_name(path) for path in paths} | compiled
    return {module_name(path): imports_of(path, known) for path in paths}


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "jobprogress._runtime" in edges["jobprogress._tracker"]
    assert "jobprogress._reporter" in edges["jobprogress._runtime"]
    assert "jobprogress._mailbox" in edges["jobprogress._reporter"]


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = walk(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


def test_no_import_circle() -> None:
    edges = graph()
    # A package's __init__ re-exporting its modules is not a circle of logic: leave those edges out.
    logic = {
        source: {target for target in targets if not target.startswith(source + ".")}
        for source, targets in edges.items()
    }
    logic = {
        source: {
            target for target in targets if not source.startswith(target + ".") or target == "jobprogress"
        }
        for source, targets in logic.items()
    }
    assert _cycle(logic) is None, " -> ".join(_cycle(logic) or [])


def _floor(module: str, floors: list[list[str]]) -> int | None:
    for index, floor in enumerate(floors):
        for prefix in floor:
            if module == prefix or module.startswith(prefix + "."):
                return index
    return None


@pytest.mark.parametrize("floors", [CORE_FLOORS, ROOMS], ids=["core", "rooms"])
def test_lower_floors_never_import_higher_ones(floors: list[list[str]]) -> None:
    upward = []
    for source, targets in graph().items():
        mine = _floor(source, floors)
        if mine is None:
            continue
        for target in targets:
            theirs = _floor(target, floors)
            if theirs is not None and theirs < mine:
                upward.append(f"{source} -> {target}")
    assert upward == []


def test_foundations_import_nothing_of_the_package_above_them() -> None:
    edges = graph()
    for module in FOUNDATIONS:
        assert edges[module] <= set(FOUNDATIONS), (
            f"{module} imports {sorted(edges[module] - set(FOUNDATIONS))}"
        )


def test_the_core_never_imports_a_room() -> None:
    core = [
        name
        for name in graph()
        if _floor(name, ROOMS) is None and not name.startswith("jobprogress.sinks.sql")
    ]
    edges = graph()
    leaks = sorted(
        f"{name} -> {target}" for name in core for target in edges[name] if _floor(target, ROOMS) is not None
    )
    assert leaks == []
