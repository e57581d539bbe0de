"""The ``lexicons`` console script: find the application, then run its command.

::

    lexicons run app.py --port 8000         # a file
    lexicons run chat.app:app               # a module, importable from the working directory
    python -m lexicons shell app.py

The commands and flags are those of ``python app.py`` (:mod:`lexicons.commands`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .commands import build_parser, dispatch
from .errors import LexiconsError
from .server import Server

__all__ = ["load_app", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lexicons`` console script and of ``python -m lexicons``."""
    parser = build_parser("lexicons", target=True)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("name a command: lexicons {run,shell,migrate,schema,types} path/to/app.py")
    try:
        app, module = _load(args.target)
    except LexiconsError as exc:
        parser.exit(2, f"lexicons: error: {exc}\n")
    source = getattr(module, "__file__", None)
    return dispatch(app, args, source=None if source is None else Path(source))


def load_app(target: str) -> Server:
    """Import ``path/to/app.py`` or ``package.module[:name]`` and find its Server."""
    return _load(target)[0]


def _load(target: str) -> tuple[Server, ModuleType]:
    module_name, _, attribute = target.partition(":")
    if module_name.endswith(".py") or os.sep in module_name:
        module = _load_file(target, Path(module_name))
    else:
        # As uvicorn does: a module in the working directory is importable by name.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LexiconsError(f"{target}: cannot import {module_name!r}: {exc}") from exc
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, Server):
            raise LexiconsError(f"{target}: {attribute!r} is not a lexicons Server")
        return app, module
    found = [value for value in vars(module).values() if isinstance(value, Server)]
    if len(found) != 1:
        raise LexiconsError(
            f"{target}: found {len(found)} Server objects; name one as {module_name}:NAME"
        )
    return found[0], module


def _load_file(target: str, file: Path) -> ModuleType:
    path = file.resolve()
    if not path.is_file():
        raise LexiconsError(f"{target}: no such file")
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
