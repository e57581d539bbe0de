"""Every ```python block in docs/ runs, so the documentation cannot rot.

The blocks of one page run in order in one namespace, as a reader would paste them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(p for p in DOCS.glob("*.md") if BLOCK.search(p.read_text()))


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
