"""No import circles in the package: a lower module never imports a higher one.

Every import counts, at the top of a module or inside a function (a lazy import that runs
back up is still a circle); only imports under ``if TYPE_CHECKING:`` are left out, since
they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lexicons

PACKAGE = Path(lexicons.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Imports(ast.NodeVisitor):
    """The lexicons modules one module imports when it runs."""

    def __init__(self, name: str, is_package: bool, known: set[str]) -> None:
        self.package = name if is_package else name.rpartition(".")[0]
        self.known = known
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(a.name for a in node.names if a.name in self.known)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.package
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        submodules = {f"{base}.{a.name}" for a in node.names} & self.known
        self.found.update(submodules)
        # ``from . import module`` takes a module, not the package's own names.
        if base in self.known and len(submodules) < len(node.names):
            self.found.add(base)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        visitor = Imports(name, path.name == "__init__.py", set(files))
        visitor.visit(ast.parse(path.read_text()))
        graph[name] = visitor.found - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for imported in sorted(graph[name]):
            if state.get(imported) == 1:
                found.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return found


def test_the_package_has_no_import_circles() -> None:
    found = circles(import_graph())
    assert not found, "\n".join(" -> ".join(circle) for circle in found)


def test_the_checker_sees_a_lazy_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert circles(graph) == [["a", "b", "c", "a"]]


def test_the_command_line_sits_above_the_server() -> None:
    graph = import_graph()
    assert "lexicons.server" in graph["lexicons.cli"]
    assert "lexicons.commands" in graph["lexicons.server"]
    for lower in ("lexicons.commands", "lexicons.workers", "lexicons.lifecycle"):
        assert not graph[lower] & {"lexicons.cli", "lexicons.server", "lexicons"}, lower
