"""The source distribution carries its tests and everything they read, and a license."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What the test suite reads besides the package itself.
NEEDED = ("tests", "examples", "docs", "benchmarks")
#: What a working copy makes and the sdist must leave out.
GENERATED = {"__pycache__", ".pytest_cache", ".hypothesis", "data"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def source_files() -> set[str]:
    """The files of the working copy the tests may read, relative to the root."""
    found = {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"}
    for top in NEEDED:
        for path in (ROOT / top).rglob("*"):
            parts = set(path.relative_to(ROOT).parts)
            if path.is_file() and not parts & GENERATED and ".sqlite3" not in path.name:
                if path.suffix != ".pyc":
                    found.add(path.relative_to(ROOT).as_posix())
    return found


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, built with the installed setuptools from a copy of this working copy
    without build leftovers: a previous build's file list must not fill the gaps."""
    source = tmp_path_factory.mktemp("source") / "lexicons"
    leftovers = (
        "*.egg-info",
        "build",
        "dist",
        ".git",
        *GENERATED,
        "*.pyc",
        "*.sqlite3*",
        "reports",
    )
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*leftovers))
    out = tmp_path_factory.mktemp("dist")
    build = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    result = subprocess.run(
        [sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stderr
    return out / result.stdout.strip().splitlines()[-1]


def test_the_sdist_holds_the_tests_and_what_they_read(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        members = {name.partition("/")[2] for name in archive.getnames()}
    missing = source_files() - members
    assert not missing, f"not in the sdist: {sorted(missing)}"
    assert "src/lexicons/py.typed" in members
    assert not [name for name in members if "__pycache__" in name or ".sqlite3" in name]


def test_the_license_is_mit_and_named_in_the_metadata() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "The lexicons developers" in text
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
