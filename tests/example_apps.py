"""Import an example app by path, as a fresh module each time, so every test gets its own app."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).parent.parent / "examples"
_fresh = itertools.count()


def load_example(name: str, module: str = "app") -> ModuleType:
    """``examples/<name>/<module>.py`` as a new module (its own Server and state)."""
    path = EXAMPLES / name / f"{module}.py"
    unique = f"example_{name}_{module}_{next(_fresh)}"
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[unique] = loaded  # dataclasses and msgspec look types up through it
    spec.loader.exec_module(loaded)
    return loaded
