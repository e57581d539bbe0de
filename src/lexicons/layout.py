"""Where ``app.run()`` stands in its module: below every component, as the last statement.

``app.run()`` serves until the server stops, then exits the process. Code that follows
it in the module never runs while the server does: a header written below the call
never checks a handshake, so every connection would be admitted. :meth:`Server.run`
refuses to start in that case, and says which line to move::

    chat.py, line 40: `@app.header` comes after app.run() (line 28), so it would never
    run while the server does ...
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import FrameType

from .errors import RegistrationError

__all__ = ["Statement", "check_run_is_last", "module_statement", "statement_after"]

#: The file and line of a call made by a module's top-level code.
Statement = tuple[str, int]


def module_statement(frame: FrameType | None) -> Statement | None:
    """The file and line of the top-level module code that led to ``frame``, if any.

    ``app.run()`` may be called from a ``main()`` function that the module calls at its
    end; what matters is the module-level statement that is running.
    """
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return None


def statement_after(source: str, line: int) -> tuple[int, str] | None:
    """The first top-level statement after the one spanning ``line``: its line and its
    first line of text; ``None`` when that statement is the module's last."""
    tree = ast.parse(source)
    for index, node in enumerate(tree.body):
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            if index + 1 == len(tree.body):
                return None
            following = tree.body[index + 1]
            decorators = getattr(following, "decorator_list", [])
            start = min([following.lineno, *(d.lineno for d in decorators)])
            return start, source.splitlines()[start - 1].strip()
    return None


def check_run_is_last(statement: Statement) -> None:
    """Refuse to run when module code follows the top-level statement that called run.

    Sources that cannot be read (an interactive session, ``python -c``) are not checked.
    """
    filename, line = statement
    path = Path(filename)
    try:
        source = path.read_text()
        after = statement_after(source, line)
    except (OSError, SyntaxError, ValueError):
        return
    if after is None:
        return
    later, text = after
    raise RegistrationError(
        f"{path.name}, line {later}: `{text}` comes after app.run() (line {line}), so it "
        "would never run while the server does: app.run() serves until the server stops, "
        "then exits. Put every component above the call, and end the file with\n\n"
        '    if __name__ == "__main__":\n        app.run()\n'
    )
