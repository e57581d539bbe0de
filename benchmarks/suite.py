"""Run the matrix: every scenario against every target, on each event loop, repeated.

Repetitions are rounds: within a round every target runs every scenario once, so the
ratio of lexicons to raw websockets (and to the floor) is taken pair by pair within one
round, then summarized over the rounds. Every run gets a server process of its own
(a fresh process for each scenario, except in quick mode, where one process per target
serves all scenarios, idle memory first, to keep the smoke test to seconds).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import dialect, feed_text
from .harness import ServerProcess, cores, machine, pin, raise_fd_limit, summarize, versions
from .scenarios import Scenario, Sizes, scenarios
from .targets import TARGETS, Target, loop_factory, missing

__all__ = ["GOALS", "Plan", "run", "summarize_runs"]

ROOT = Path(__file__).resolve().parent.parent

#: (scenario prefix, target, reference, bound): ``target / reference`` must be at most
#: ``bound`` (bound > 0), or ``reference / target`` at least ``-bound`` (bound < 0).
GOALS: list[tuple[str, str, str, float]] = [
    ("echo", "lexicons", "raw", 0.75),
    ("echo", "lexicons", "floor", 1.25),
    ("echo", "lexicons", "socketio-aiohttp", -4.0),
    ("fanout", "lexicons", "raw", 0.7),
    ("fanout", "lexicons", "floor", 1.1),
    ("fanout", "lexicons", "socketio-aiohttp", -8.0),
    ("churn", "lexicons", "raw", 0.8),
    ("idle", "lexicons", "raw", 0.7),
    ("echo", "lexicons-metrics", "lexicons", 1.03),
]

#: The references every other target is compared with, pair by pair.
REFERENCES = ("raw", "floor")


@dataclass
class Plan:
    """What to run: which targets, scenarios and loops, how often, how big."""

    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    scenarios: list[str] | None = None  # None: all; a name matches itself and name-*
    loops: list[str] = field(default_factory=lambda: ["uvloop", "asyncio"])
    repeat: int = 3
    sizes: Sizes = field(default_factory=Sizes)
    #: One server process per target for all its scenarios (quick mode).
    shared_server: bool = False
    #: Times a run is repeated, on a fresh process, when other processes used one of
    #: the two cores meanwhile (a shared machine); the last attempt counts regardless.
    retries: int = 1


#: Share of a core that other processes may use during a window before it is retried.
CONTENDED = 0.1


def _selected(table: dict[str, Scenario], wanted: Sequence[str] | None) -> list[Scenario]:
    if not wanted:
        return list(table.values())
    chosen = [
        s for s in table.values() if any(s.name == w or s.name.startswith(w + "-") for w in wanted)
    ]
    if not chosen:
        raise SystemExit(f"no scenario matches {', '.join(wanted)}; known: {', '.join(table)}")
    return chosen


def run(plan: Plan, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``plan`` and return the raw runs, their summary, and what they ran on."""
    raise_fd_limit()
    where = machine()  # before pinning, which narrows the cores this process sees
    server_cpu, generator_cpu = cores()
    pin(os.getpid(), generator_cpu)
    table = scenarios(plan.sizes)
    chosen = _selected(table, plan.scenarios)
    # Idle memory first when a process is shared, so its baseline is a fresh process.
    chosen.sort(key=lambda s: s.name != "idle" if plan.shared_server else 0)
    skipped: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    generator_loop = "uvloop" if missing(TARGETS["lexicons"], "uvloop") is None else "asyncio"
    started = time.monotonic()
    with asyncio.Runner(loop_factory=loop_factory(generator_loop)) as runner:
        for round_ in range(plan.repeat):
            for loop in plan.loops:
                for target in (TARGETS[name] for name in plan.targets):
                    reason = missing(target, loop)
                    if reason is not None:
                        skipped[f"{target.name} on {loop}"] = reason
                        continue
                    if plan.shared_server:
                        with _server(target, loop, server_cpu) as server:
                            for scenario in chosen:
                                record = _one(runner, server, target, scenario, plan.sizes)
                                record.update(round=round_, loop=loop, attempts=1)
                                runs.append(record)
                                log(_line(record, scenario))
                        continue
                    for scenario in chosen:
                        for attempt in range(1, plan.retries + 2):
                            with _server(target, loop, server_cpu) as server:
                                record = _one(runner, server, target, scenario, plan.sizes)
                            record.update(round=round_, loop=loop, attempts=attempt)
                            log(_line(record, scenario))
                            if not _contended(record, scenario):
                                break
                        runs.append(record)
    for what, why in sorted(skipped.items()):
        log(f"skipped {what}: {why}")
    return {
        "machine": where,
        "versions": versions(
            "lexicons",
            "websockets",
            "msgspec",
            "uvloop",
            "python-socketio",
            "python-engineio",
            "aiohttp",
            "uvicorn",
            "httptools",
        ),
        "command": " ".join(["python", "-m", "benchmarks", *sys.argv[1:]]),
        "generator_loop": generator_loop,
        "cores": {"server": server_cpu, "generator": generator_cpu},
        "sizes": plan.sizes.__dict__,
        "repeat": plan.repeat,
        "seconds": round(time.monotonic() - started, 1),
        "skipped": skipped,
        "runs": runs,
        "summary": summarize_runs(runs, table),
    }


def _server(target: Target, loop: str, cpu: int) -> ServerProcess:
    argv = [sys.executable, "-m", "benchmarks.targets", target.name, "--loop", loop]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Killed, not shut down: its clients are gone already, and a graceful shutdown of
    # thousands of connections (uvicorn waits for them) would only lengthen the run.
    return ServerProcess(argv, cpu=cpu, env=env, cwd=ROOT, grace=0)


def _contended(record: dict[str, Any], scenario: Scenario) -> bool:
    """Whether other processes took a share of either core during a CPU measurement."""
    if scenario.key != "cpu_per_unit_us":  # memory is not disturbed by sharing a core
        return False
    others = max(record["foreign_on_server_core"], record["foreign_on_generator_core"])
    return bool(others >= CONTENDED)


def _one(
    runner: asyncio.Runner, server: ServerProcess, target: Target, scenario: Scenario, sizes: Sizes
) -> dict[str, Any]:
    began = time.monotonic()
    speaker = dialect(target.dialect, feed_text(sizes.text_size)) if sizes.text_size else None
    result = runner.run(scenario.run(server, speaker or dialect(target.dialect), sizes))
    if not server.alive():
        raise RuntimeError(f"{target.name} died during {scenario.name}")
    return {
        "target": target.name,
        "scenario": scenario.name,
        "unit": scenario.unit,
        "headline": scenario.headline(result),
        "seconds": round(time.monotonic() - began, 2),
        **result,
    }


def _line(record: dict[str, Any], scenario: Scenario) -> str:
    rate = record.get("rate_per_s")
    extra = f"  {rate:,.0f}/s  busy {record['server_busy']:.0%}" if rate is not None else ""
    retry = f"  (attempt {record['attempts']})" if record["attempts"] > 1 else ""
    return (
        f"round {record['round']}  {record['loop']:7}  {record['scenario']:10} "
        f"{record['target']:17} {record['headline']:9.3f} {scenario.unit}{extra}"
        f"  bottleneck: {record['bottleneck']}{retry}"
    )


def summarize_runs(runs: list[dict[str, Any]], table: dict[str, Scenario]) -> list[dict[str, Any]]:
    """Median and spread of each (scenario, loop, target), and its ratios per round.

    ``ratios[ref]`` is ``target / ref`` computed within each round, then summarized.
    """
    index: dict[tuple[str, str, str, int], dict[str, Any]] = {
        (r["scenario"], r["loop"], r["target"], r["round"]): r for r in runs
    }
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["loop"], r["target"]), []).append(r)
    summary = []
    for (scenario, loop, target), members in groups.items():
        ratios: dict[str, dict[str, float]] = {}
        # lexicons itself too: what a variant of it (metrics, ASGI) costs, pair by pair.
        references = (*REFERENCES, "lexicons", *(t for t in TARGETS if t.startswith("socketio")))
        for ref in references:
            pairs = [
                r["headline"] / other["headline"]
                for r in members
                if (other := index.get((scenario, loop, ref, r["round"]))) and other["headline"]
            ]
            if pairs and ref != target:
                ratios[ref] = summarize(pairs)
        summary.append(
            {
                "scenario": scenario,
                "loop": loop,
                "target": target,
                "unit": members[0]["unit"],
                "headline": summarize(r["headline"] for r in members),
                "rate_per_s": summarize(r.get("rate_per_s", 0.0) for r in members),
                "p50_ms": summarize(r.get("p50_ms", float("nan")) for r in members),
                "p99_ms": summarize(r.get("p99_ms", float("nan")) for r in members),
                # What the load generator spent per unit: it must stay below the server's.
                "generator_per_unit_us": summarize(
                    r["generator_cpu_s"] / r["units"] * 1e6 for r in members if r.get("units")
                ),
                "bottlenecks": sorted({r["bottleneck"] for r in members}),
                "ratios": ratios,
            }
        )
    return summary
