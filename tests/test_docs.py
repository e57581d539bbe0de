"""Every ```python block in docs/ runs, so the documentation cannot rot.

The blocks of one page run in order in one namespace, as a reader would paste them. The
tutorial is followed as its reader follows it instead: files on disk, each step's code
above ``if __name__ == "__main__":``, the server started after every step, and its test
run twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Process
from websockets.asyncio.client import connect

DOCS = Path(__file__).parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
TUTORIAL = DOCS / "index.md"
PAGES = sorted(p for p in DOCS.glob("*.md") if BLOCK.search(p.read_text()) and p != TUTORIAL)
MAIN = 'if __name__ == "__main__":'
FILE = re.compile(r"# (\w+\.py)\n")
#: How the tutorial's server is reached in tests: its command, on a free loopback port.
LOOPBACK = {"LEXICONS_HOST": "127.0.0.1", "LEXICONS_PORT": "0"}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # examples that write data files write them here
    try:
        for number, block in enumerate(BLOCK.findall(page.read_text()), 1):
            code = compile(block, f"{page.name}#block{number}", "exec", dont_inherit=True)
            exec(code, namespace)
    finally:
        os.chdir(cwd)


def tutorial_steps(*, below_run: bool = False) -> list[dict[str, str]]:
    """The tutorial's files after each of its code blocks. A block that starts with
    ``# name.py`` is that whole file; any other adds to ``chat.py`` above its main block
    (or, with ``below_run``, at its end: what the tutorial tells its reader not to do)."""
    files: dict[str, str] = {}
    steps = []
    for block in BLOCK.findall(TUTORIAL.read_text()):
        named = FILE.match(block)
        if named:
            files[named.group(1)] = block
        elif below_run:
            files["chat.py"] += "\n\n" + block
        else:
            head, main, tail = files["chat.py"].partition(MAIN)
            files["chat.py"] = f"{head.rstrip()}\n\n\n{block}\n\n{main}{tail}"
        steps.append(dict(files))
    return steps


async def echo(url: str) -> object:
    """Call the tutorial's ``echo`` as ada; other messages (history, presence) pass by."""
    async with connect(url + "?User=ada") as ws:
        await ws.send(json.dumps({"echo": {"text": "hello"}, "ref": 1}))
        while True:
            message = json.loads(await ws.recv())
            if message.get("ref") == 1:
                return message


@pytest.mark.slow
async def test_the_tutorial_runs_as_written(process: type[Process], tmp_path: Path) -> None:
    served = 0
    for files in tutorial_steps():
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        if "test_chat.py" in files:
            break
        server = process(sys.executable, "chat.py", cwd=tmp_path, env=LOOPBACK)
        assert await echo(server.url()) == {"echo": {"text": "hello"}, "ref": 1}
        code, _, err = server.stop(signal.SIGINT)
        assert code == 0, err
        served += 1
    assert served == 4  # the steps before the test
    for _ in range(2):  # the tutorial's test passes twice in a row, and writes nothing here
        result = subprocess.run(
            [sys.executable, "test_chat.py"], cwd=tmp_path, capture_output=True, timeout=60
        )
        assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == [
        "chat.py",
        "test_chat.py",
    ]


@pytest.mark.slow
def test_the_tutorial_appended_below_app_run_refuses_to_start(tmp_path: Path) -> None:
    """A reader who pastes each step at the end of the file gets an error naming the first
    misplaced line, never a server whose header does not run."""
    files = [step for step in tutorial_steps(below_run=True) if "test_chat.py" not in step][-1]
    (tmp_path / "chat.py").write_text(files["chat.py"])
    result = subprocess.run(
        [sys.executable, "chat.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **LOOPBACK},
    )
    assert result.returncode == 1
    assert "serving on" not in result.stderr
    assert "`from typing import Annotated` comes after app.run()" in result.stderr
