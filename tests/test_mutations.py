"""The bugs in tests/mutations.py are each caught by the suite (the script says which)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "mutations.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_every_mutation_is_killed() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=SCRIPT.parent.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.endswith(": killed") for line in lines), lines
