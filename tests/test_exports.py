"""The public API is what lexicons/__init__.py exports, and every module declares __all__."""

from __future__ import annotations

import importlib
import pkgutil

import lexicons


def test_every_module_declares_all() -> None:
    for info in pkgutil.walk_packages(lexicons.__path__, "lexicons."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"


def test_package_exports_exactly_its_all() -> None:
    public = {name for name in vars(lexicons) if not name.startswith("_")}
    modules = {info.name for info in pkgutil.iter_modules(lexicons.__path__)}
    assert set(lexicons.__all__) == public - modules
    for name in lexicons.__all__:
        assert getattr(lexicons, name).__module__.startswith("lexicons."), name


def test_public_objects_have_docstrings() -> None:
    for name in lexicons.__all__:
        assert getattr(lexicons, name).__doc__, f"lexicons.{name} has no docstring"
