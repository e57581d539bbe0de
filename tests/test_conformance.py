"""The conformance harness: its echo servers, and its verdict on fuzzingclient reports."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Process
from websockets.asyncio.client import connect

HARNESS = Path(__file__).parent.parent / "conformance"
_spec = importlib.util.spec_from_file_location("verdict", HARNESS / "verdict.py")
assert _spec is not None and _spec.loader is not None
verdict = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(verdict)


@pytest.mark.parametrize("script", ["echo_server.py", "reference_server.py"])
async def test_the_servers_echo_each_message_in_its_own_type(
    process: type[Process], script: str
) -> None:
    server = process(sys.executable, HARNESS / script, "0")
    assert server.popen.stdout is not None
    announced = server.popen.stdout.readline().split()
    assert announced[:2] == ["serving", "on"], server.popen.stderr
    large = bytes(range(256)) * 8192  # 2 MiB: over the default max_size, under the suite's
    async with connect(announced[2], max_size=None) as ws:
        for message in ["héllo", b"\x00\xff", "", b"", large, large.decode("latin-1")]:
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(["frag", "mented"])
        assert await ws.recv() == "fragmented"
        await ws.send([b"frag", b"", b"mented"])
        assert await ws.recv() == b"fragmented"


async def test_the_echo_with_compression_answers_compressed(process: type[Process]) -> None:
    server = process(sys.executable, HARNESS / "echo_server.py", "0", "--compression")
    assert server.popen.stdout is not None
    announced = server.popen.stdout.readline().split()
    async with connect(announced[2], compression="deflate", max_size=None) as ws:
        assert ws.protocol.extensions, "permessage-deflate was not negotiated"
        for message in ["héllo " * 100, b"\x00\xff" * 300, "", b""]:
            await ws.send(message)
            assert await ws.recv() == message


def write_report(
    tmp_path: Path, cases: dict[str, tuple[str, str]], agent: str = "lexicons"
) -> Path:
    """A fuzzingclient report directory: ``{case id: (behavior, behaviorClose)}``."""
    results: dict[str, Any] = {}
    for case_id, (behavior, close) in cases.items():
        name = f"{agent}_case_{case_id.replace('.', '_')}.json"
        description = f"Case <b>{case_id}</b> &amp; more.<br><br>MESSAGE:<br>cebae1"
        (tmp_path / name).write_text(json.dumps({"description": description}))
        results[case_id] = {
            "behavior": behavior,
            "behaviorClose": close,
            "duration": 5,
            "reportfile": name,
        }
    (tmp_path / "index.json").write_text(json.dumps({agent: results}))
    return tmp_path


def run(tmp_path: Path, allowed: object, judged: str = "lexicons") -> int:
    allowed_file = tmp_path / "allowed.json"
    allowed_file.write_text(json.dumps(allowed))
    return int(verdict.main(["verdict.py", str(tmp_path), str(allowed_file), judged]))


def test_all_ok_passes_with_a_closing_line_runners_read(tmp_path: Path, capsys: Any) -> None:
    write_report(tmp_path, {"1.1.1": ("OK", "OK"), "10.1.1": ("INFORMATIONAL", "INFORMATIONAL")})
    assert run(tmp_path, {}) == 0
    out = capsys.readouterr().out
    assert "  OK               1\n  INFORMATIONAL    1\n" in out
    assert out.splitlines()[-1] == "conformance: 2 passed, 0 failed"


def test_a_failed_case_fails_the_run_and_is_named_with_its_description(
    tmp_path: Path, capsys: Any
) -> None:
    write_report(tmp_path, {"6.3.1": ("FAILED", "FAILED"), "1.1.1": ("OK", "OK")})
    assert run(tmp_path, {"6.3.1": "no reason excuses a failure"}) == 1
    out = capsys.readouterr().out
    assert "FAILED/FAILED        6.3.1     Case 6.3.1 & more." in out
    assert "lexicons: failing cases: 6.3.1" in out
    assert out.splitlines()[-1] == "conformance: 1 passed, 1 failed"


@pytest.mark.parametrize(
    "behaviors",
    [
        ("NON-STRICT", "OK"),
        ("UNIMPLEMENTED", "OK"),
        ("OK", "WRONG CODE"),
        ("OK", "FAILED BY CLIENT"),
    ],
)
def test_non_strict_outcomes_pass_only_with_a_reason(
    tmp_path: Path, behaviors: tuple[str, str]
) -> None:
    write_report(tmp_path, {"4.1.3": behaviors})
    assert run(tmp_path, {}) == 1
    assert run(tmp_path, {"4.1.3": "reserved opcodes fail the connection at once"}) == 0


@pytest.mark.parametrize("close", ["UNCLEAN", "FAILED"])
def test_a_failed_closing_fails_an_ok_case_even_when_allowed(tmp_path: Path, close: str) -> None:
    write_report(tmp_path, {"7.1.1": ("OK", close)})
    assert run(tmp_path, {"7.1.1": "a reason"}) == 1


def test_stale_and_unknown_allowances_are_reported(tmp_path: Path, capsys: Any) -> None:
    write_report(tmp_path, {"1.1.1": ("OK", "OK")})
    assert run(tmp_path, {"1.1.1": "was non-strict once", "99.1": "no such case"}) == 0
    out = capsys.readouterr().out
    assert "warning: allowed.json: case 1.1.1 passes now; remove it" in out
    assert "warning: allowed.json: case 99.1 did not run" in out


@pytest.mark.parametrize("allowed", [[], {"4.1.3": ""}, {"4.1.3": 1}, {"4.1.3": "  "}])
def test_a_malformed_allow_list_is_refused(tmp_path: Path, allowed: object, capsys: Any) -> None:
    write_report(tmp_path, {"4.1.3": ("NON-STRICT", "OK")})
    assert run(tmp_path, allowed) == 2
    assert "allowed.json" in capsys.readouterr().err


def test_an_allow_list_that_is_not_json_is_refused(tmp_path: Path) -> None:
    write_report(tmp_path, {"1.1.1": ("OK", "OK")})
    (tmp_path / "allowed.json").write_text('{"1.1.1": ')
    args = ["verdict.py", str(tmp_path), str(tmp_path / "allowed.json"), "lexicons"]
    assert verdict.main(args) == 2


def test_a_missing_report_or_server_is_an_error_not_a_pass(tmp_path: Path, capsys: Any) -> None:
    assert run(tmp_path, {}) == 2
    write_report(tmp_path, {"1.1.1": ("OK", "OK")}, agent="websockets")
    assert run(tmp_path, {}) == 2
    assert "no results for 'lexicons'" in capsys.readouterr().err


def test_other_servers_are_shown_but_do_not_decide(tmp_path: Path, capsys: Any) -> None:
    index = {
        "websockets": {"1.1.1": {"behavior": "FAILED", "behaviorClose": "OK", "reportfile": "x"}},
        "lexicons": {"1.1.1": {"behavior": "OK", "behaviorClose": "OK", "reportfile": "y"}},
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert run(tmp_path, {}) == 0
    out = capsys.readouterr().out
    assert out.index("lexicons: 1 cases") < out.index("websockets: 1 cases")
    assert "FAILED               1.1.1     (no case report)" in out


def test_the_allow_list_and_the_documented_reasons_name_the_same_cases() -> None:
    page = (HARNESS.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = page.split("### Non-strict results\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^- `([\d.]+)`: \S", section, re.M))
    allowed = verdict.load_allowed(HARNESS / "allowed.json")
    assert documented == set(allowed)


def test_case_ids_sort_by_number() -> None:
    assert sorted(["9.1.10", "10.1.1", "9.1.2", "1.1.1"], key=verdict.case_key) == [
        "1.1.1",
        "9.1.2",
        "9.1.10",
        "10.1.1",
    ]
