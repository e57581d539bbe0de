"""The benchmark harness cannot rot: its smoke mode runs every target, and its parts hold.

Nothing here asserts a timing: the smoke run checks that each target answers correctly
(the harness decodes the first reply and broadcast of every run) and that every figure
the tables need is produced.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import hot_paths
from benchmarks.client import Client, Deflated, dialect, feed_text
from benchmarks.harness import cpu_seconds, rss_bytes, summarize
from benchmarks.report import sizing
from benchmarks.scenarios import percentiles
from benchmarks.suite import summarize_runs
from benchmarks.targets import TARGETS, missing
from lexicons.network.frames import binary_frame, flavour, framer, text_frame

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {"echo", "fanout-20", "churn", "idle"}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(TARGETS))
def test_quick_run_measures_every_scenario(name: str, tmp_path: Path) -> None:
    reason = missing(TARGETS[name])
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    output = tmp_path / "network.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--target", name, "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text())
    runs = results["runs"]
    assert {r["scenario"] for r in runs} == SCENARIOS
    for run in runs:
        assert run["target"] == name
        assert math.isfinite(run["headline"]) and run["units"] > 0, run
        assert run["bottleneck"] in ("server", "generator", "neither", "other processes")
    assert {s["scenario"] for s in results["summary"]} == SCENARIOS
    assert "| echo |" in done.stdout  # the Markdown table was printed


class Counter:
    def __init__(self) -> None:
        self.frames = 0

    def __call__(self, client: Client, count: int) -> None:
        self.frames += count


def opened(on_frames: Counter) -> Client:
    """A client past its handshake, as a server's 101 leaves it."""

    class Sink:
        def write(self, data: bytes) -> None:
            pass

    client = Client(dialect("json"), 1, on_frames)
    client.transport = Sink()  # type: ignore[assignment]
    client.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    return client


@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=400), max_size=10),
)
async def test_client_counts_frames_however_the_stream_is_cut(
    payloads: list[bytes], cuts: list[int]
) -> None:
    counter = Counter()
    client = opened(counter)
    stream = b"".join(text_frame(p) for p in payloads)
    start = 0
    for size in cuts:
        client.data_received(stream[start : start + size])
        start += size
    if start < len(stream):
        client.data_received(stream[start:])
    assert counter.frames == len(payloads)


async def test_client_keeps_payloads_when_asked() -> None:
    client = opened(Counter())
    client.keep = True
    client.data_received(text_frame(b'{"Echo":{"text":"a"}}') + text_frame(b"x" * 200))
    assert client.kept == [b'{"Echo":{"text":"a"}}', b"x" * 200]


def test_dialects_decode_what_they_encode() -> None:
    for name in ("json", "msgpack", "deflate", "socketio"):
        speaker = dialect(name)
        assert speaker.decode(speaker.encode("Echo", {"text": "hi"})) == ("Echo", {"text": "hi"})


async def test_client_counts_binary_and_keeps_compressed_frames_marked() -> None:
    client = opened(Counter())
    client.keep = True
    message = b'{"Publish":{"text":"' + feed_text(300).encode() + b'"}}'
    compressed = framer(flavour(False, 15))(message)
    client.data_received(binary_frame(b"\x81\xa1a\x01") + compressed)
    packed, deflated = client.kept
    assert packed == b"\x81\xa1a\x01" and not isinstance(packed, Deflated)
    assert isinstance(deflated, Deflated) and len(deflated) < len(message)
    assert dialect("deflate").decode(deflated) == ("Publish", {"text": feed_text(300)})


def test_process_accounting_reads_this_process() -> None:
    import os

    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(200_000))
    assert cpu_seconds(os.getpid()) > before
    assert rss_bytes(os.getpid()) > 1_000_000


def test_summaries_and_ratios_pair_runs_of_the_same_round() -> None:
    assert summarize([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "spread": 1.0}
    assert percentiles([1_000_000 * i for i in range(1, 101)]) == {"p50_ms": 50.0, "p99_ms": 99.0}

    def run(target: str, round_: int, value: float) -> dict[str, Any]:
        return {
            "scenario": "echo",
            "loop": "asyncio",
            "target": target,
            "round": round_,
            "unit": "µs per message",
            "headline": value,
            "bottleneck": "server",
        }

    runs = [run("lexicons", 0, 5.0), run("raw", 0, 10.0), run("lexicons", 1, 9.0)]
    runs.append(run("raw", 1, 10.0))
    (lexicons,) = [s for s in summarize_runs(runs, {}) if s["target"] == "lexicons"]
    assert lexicons["ratios"]["raw"]["median"] == pytest.approx(0.7)  # (0.5 + 0.9) / 2


def test_sizing_reads_an_idle_run_that_grew_by_no_page_as_unknown() -> None:
    """A quick run's twenty idle connections may not grow the server by a single page."""

    def idle(kib: float) -> dict[str, Any]:
        return {
            "scenario": "idle",
            "loop": "asyncio",
            "target": "lexicons",
            "headline": {"median": kib},
        }

    assert sizing({"summary": [idle(0.0)]}).splitlines()[-1] == "| asyncio | – | – | – | – |"
    assert (
        sizing({"summary": [idle(1.0)]}).splitlines()[-1] == "| asyncio | – | – | – | 1,048,576 |"
    )


def test_connection_phases_runs_every_step_for_both_targets() -> None:
    """The in-process breakdown completes real handshakes (no timing is asserted)."""
    from benchmarks.connection_phases import PHASES, compare, table

    results = asyncio.run(compare(200))
    assert set(results) == {"floor", "lexicons"}
    for phases in results.values():
        assert list(phases) == list(PHASES)
        assert all(math.isfinite(spent) and spent > 0 for spent in phases.values())
    assert table(results).count("\n") == 3  # header, rule, one row per target


def test_hot_paths_measures_an_echo_and_a_delivery(capsys: Any) -> None:
    hot_paths.main(rounds=1, echoes=50, broadcasts=2)
    echo, fanout = capsys.readouterr().out.splitlines()
    assert echo.startswith("echo ") and echo.endswith(" µs per message")
    assert float(echo.split()[1]) > 0 and float(fanout.split()[2]) > 0
