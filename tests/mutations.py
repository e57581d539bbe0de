"""Bugs the suite must catch: each is planted in a copy of src/, and its tests must fail.

Four plausible bugs once survived the whole suite (issue 19). Each is kept here as a
small edit to the source; this script applies one at a time to a copy of ``src/`` and
runs the tests that must catch it against that copy. A mutation the tests pass with has
survived, and the script fails, so the check stays honest::

    python tests/mutations.py              # every mutation; exit status 1 if one survives
    python tests/mutations.py --list       # what they are and which tests catch them
    python tests/mutations.py update-unmarked

A mutation whose text is no longer in the source fails too ("stale"): the code moved,
and the mutation must move with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        name="update-unmarked",
        what="db.update no longer marks the store changed (updates lost after a reopen)",
        file="src/lexicons/store/database.py",
        old="        if values and rows:\n            self._writing(table)\n",
        new="",
        tests=(
            "tests/test_storage.py::test_an_update_alone_is_a_change_to_commit",
            "tests/test_crash.py",
        ),
    ),
    Mutation(
        name="load-keeps-old-table",
        what="a commit after load() no longer deletes the old table (dropped rows come back)",
        file="src/lexicons/store/storage.py",
        old="                if table.reset:\n"
        """                    conn.execute(f'DELETE FROM "{name}"')\n""",
        new="",
        tests=(
            "tests/test_storage.py::test_rows_a_load_dropped_stay_dropped_after_reopen",
            "tests/test_database_stateful.py::TestDurableStore",
        ),
    ),
    Mutation(
        name="update-unchecked",
        what="update skips the value checks create makes (NaN, inf, non-JSON values)",
        file="src/lexicons/store/models.py",
        old="        if info.check is not None and (problem := info.check(value)):\n"
        '            raise IntegrityError(f"{self.name}.{name}: {problem}")\n',
        new="",
        tests=("tests/test_database.py::test_every_write_path_refuses_the_same_values",),
    ),
    Mutation(
        name="broadcast-before-commit",
        what="a broadcast leaves before its write is committed",
        file="src/lexicons/durable.py",
        old="        elif not self._saved(unit):\n",
        new="        elif unit.error is not None:\n",
        tests=(
            "tests/test_durability.py::test_a_broadcast_never_leaves_before_its_write_is_committed",
        ),
    ),
)


def run(mutation: Mutation) -> str:
    """``"killed"``, ``"survived"`` or ``"stale: ..."``, for one mutation."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "src"
        shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__"))
        target = Path(scratch) / mutation.file
        text = target.read_text()
        if text.count(mutation.old) != 1:
            return f"stale: the text to change is in {mutation.file} {text.count(mutation.old)}x"
        target.write_text(text.replace(mutation.old, mutation.new))
        # The copy comes first on the path, for the tests and the servers they start.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(ROOT)])}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                *mutation.tests,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
    if result.returncode == 1:  # tests ran and failed: the mutation was caught
        return "killed"
    if result.returncode == 0:
        return "survived"
    return f"stale: pytest exited {result.returncode}:\n{result.stdout[-2000:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.what}\n    caught by {', '.join(m.tests)}")
        return 0
    survivors = 0
    for m in chosen:
        outcome = run(m)
        print(f"{m.name}: {outcome}", flush=True)
        survivors += outcome != "killed"
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
