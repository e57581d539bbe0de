"""The database benchmark's quick mode runs, so the benchmark cannot rot (no timings asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).parent.parent / "benchmarks" / "database.py"


@pytest.mark.slow
def test_quick_mode_reports_every_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("benchmark_database", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # models resolve their annotations
    spec.loader.exec_module(module)
    out = tmp_path / "database.json"
    assert module.main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    sizes = sorted({r["rows"] for r in report["results"]})
    for size in sizes:
        done = [r["operation"] for r in report["results"] if r["rows"] == size]
        assert done == list(module.OPERATIONS)
    assert all(r["lexicons_us"] > 0 and r["sqlite3_us"] > 0 for r in report["results"])
    table = capsys.readouterr().out
    assert table.count("\n| create |") == len(sizes) and "| operation |" in table
