"""app.run() must be its module's last statement: code below it never runs while serving."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons import RegistrationError
from lexicons.layout import check_run_is_last, module_statement, statement_after

MAIN = 'if __name__ == "__main__":\n    app.run()\n'


def source(*blocks: str) -> str:
    return "\n".join(textwrap.dedent(block) for block in blocks)


def line_of(text: str, wanted: str) -> int:
    return text.splitlines().index(wanted) + 1


def test_the_last_statement_is_accepted() -> None:
    text = source("from lexicons import Server\napp = Server()\n", MAIN)
    assert statement_after(text, line_of(text, "    app.run()")) is None


def test_code_inside_the_main_block_after_the_call_is_accepted() -> None:
    text = source("app = 1\n", 'if __name__ == "__main__":\n    app.run()\n    print("bye")\n')
    assert statement_after(text, line_of(text, "    app.run()")) is None


def test_a_decorated_component_below_is_reported_at_its_decorator() -> None:
    text = source(
        "app = 1\n",
        MAIN,
        """
        @app.header
        @other
        def User(ws, header: str) -> bool:
            return True
        """,
    )
    assert statement_after(text, line_of(text, "    app.run()")) == (
        line_of(text, "@app.header"),
        "@app.header",
    )


statements = st.lists(
    st.sampled_from(["x = 1", "app.channel('Room')", "def f():\n    return 1", "import os"]),
    max_size=6,
)


@given(before=statements, after=statements)
def test_reported_exactly_when_a_statement_follows(before: list[str], after: list[str]) -> None:
    text = "\n".join([*before, "app.run()", *after]) + "\n"
    line = text.splitlines().index("app.run()") + 1
    found = statement_after(text, line)
    if not after:
        assert found is None
    else:
        assert found is not None and found[1] == after[0].splitlines()[0]


def test_the_module_statement_is_found_through_function_calls(tmp_path: Path) -> None:
    """``main()`` called at the end of the module calls app.run(): the module's statement
    is the ``main()`` line."""
    found: list[tuple[str, int] | None] = []

    def run() -> None:
        frame: FrameType | None = sys._getframe(1)
        found.append(module_statement(frame))

    text = "def main():\n    run()\n\n\nmain()\n"
    exec(compile(text, str(tmp_path / "mod.py"), "exec"), {"run": run})
    assert found == [(str(tmp_path / "mod.py"), 5)]


def test_a_module_with_code_after_run_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "chat.py"
    path.write_text(source("app = 1\n", MAIN, "\n@app.header\ndef User(header): ...\n"))
    lines = path.read_text().splitlines()
    run, header = lines.index("    app.run()") + 1, lines.index("@app.header") + 1
    with pytest.raises(RegistrationError) as refused:
        check_run_is_last((str(path), run))
    message = str(refused.value)
    assert message.startswith(f"chat.py, line {header}: `@app.header` comes after app.run()")
    assert f"(line {run})" in message


def test_sources_that_cannot_be_read_are_not_checked(tmp_path: Path) -> None:
    check_run_is_last(("<stdin>", 3))
    check_run_is_last((str(tmp_path / "gone.py"), 3))
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    check_run_is_last((str(broken), 1))
