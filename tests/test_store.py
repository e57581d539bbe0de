"""The store is a package of its own: it reaches nothing above it in lexicons."""

from __future__ import annotations

import ast
from pathlib import Path

import lexicons
from lexicons import store

STORE = Path(store.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against lexicons.store."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
            else:
                base = ["lexicons", "store"][: 3 - node.level]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
    return found


def test_store_imports_only_itself_and_errors() -> None:
    """Lower modules never import higher ones: no server, network, channels or protocol."""
    files = sorted(STORE.glob("*.py"))
    assert {f.name for f in files} >= {
        "models.py",
        "database.py",
        "indexes.py",
        "query.py",
        "storage.py",
    }
    for path in files:
        ours = {name for name in _imports(path) if name.split(".")[0] == "lexicons"}
        allowed = {"lexicons.errors", "lexicons.store"}
        stray = {name for name in ours if not any(name.startswith(a) for a in allowed)}
        assert not stray, f"{path.name} imports {sorted(stray)}"


def test_public_store_names_are_the_package_names() -> None:
    for name in store.__all__:
        assert getattr(lexicons, name) is getattr(store, name)
