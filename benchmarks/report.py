"""Render a suite's results as the Markdown tables docs/performance.md shows."""

from __future__ import annotations

import math
from typing import Any

from .suite import GOALS
from .targets import TARGETS

__all__ = ["goals", "markdown", "sizing"]


def _cell(stats: dict[str, float], digits: int = 2) -> str:
    median = stats["median"]
    if math.isnan(median):
        return "–"
    spread = stats.get("spread", 0.0)
    return f"{median:.{digits}f} ±{spread * 50:.0f}%" if spread else f"{median:.{digits}f}"


def _by(summary: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(s["scenario"], s["loop"], s["target"]): s for s in summary}


def _order(summary: list[dict[str, Any]], key: str) -> list[str]:
    seen: list[str] = []
    for s in summary:
        if s[key] not in seen:
            seen.append(s[key])
    return seen


def markdown(results: dict[str, Any]) -> str:
    """Per event loop: the headline table, the ratio table, then rates and latencies.

    A cell is ``median ±half-spread%`` over the rounds (half of (max - min) / median).
    """
    summary = results["summary"]
    by = _by(summary)
    out: list[str] = []
    targets = [t for t in TARGETS if any(s["target"] == t for s in summary)]
    for loop in _order(summary, "loop"):
        scen = [s for s in _order(summary, "scenario") if any((s, loop, t) in by for t in targets)]
        out.append(f"#### Server CPU, {loop} (median of {results['repeat']} rounds)\n")
        out.append("| scenario | unit | " + " | ".join(TARGETS[t].label for t in targets) + " |")
        out.append("|---|---|" + "---:|" * len(targets))
        for name in scen:
            row = [by[(name, loop, t)] if (name, loop, t) in by else None for t in targets]
            unit = next(r["unit"] for r in row if r)
            cells = [_cell(r["headline"]) if r else "–" for r in row]
            out.append(f"| {name} | {unit} | " + " | ".join(cells) + " |")
        out.append("")
        out.append(f"#### Ratios, {loop} (per round, then median)\n")
        out.append(
            "| scenario | target | ÷ raw websockets | ÷ floor | python-socketio (aiohttp) ÷ it |"
        )
        out.append("|---|---|---:|---:|---:|")
        for name in scen:
            for t in targets:
                s = by.get((name, loop, t))
                if s is None:
                    continue
                ratios = s["ratios"]
                raw = _cell(ratios["raw"]) if "raw" in ratios else "–"
                floor = _cell(ratios["floor"]) if "floor" in ratios else "–"
                sio = ratios.get("socketio-aiohttp")
                times = f"{1 / sio['median']:.1f}x" if sio else "–"
                out.append(f"| {name} | {TARGETS[t].label} | {raw} | {floor} | {times} |")
        out.append("")
        out.append(f"#### Throughput and latency, {loop}\n")
        out.append(
            "| scenario | target | per second | p50 ms | p99 ms | generator µs per unit "
            "| bottleneck |"
        )
        out.append("|---|---|---:|---:|---:|---:|---|")
        for name in scen:
            if name == "idle":
                continue
            for t in targets:
                s = by.get((name, loop, t))
                if s is None:
                    continue
                out.append(
                    f"| {name} | {TARGETS[t].label} | {s['rate_per_s']['median']:,.0f} | "
                    f"{s['p50_ms']['median']:.2f} | {s['p99_ms']['median']:.2f} | "
                    f"{s['generator_per_unit_us']['median']:.1f} | "
                    f"{', '.join(s['bottlenecks'])} |"
                )
        out.append("")
    out.append(goals(results))
    out.append(sizing(results))
    return "\n".join(out)


def sizing(results: dict[str, Any]) -> str:
    """What one core sustains with lexicons, from the medians: for sizing a deployment."""
    by = _by(results["summary"])
    lines = [
        "#### One core with lexicons (from the medians above)\n",
        "| loop | messages/s (echo) | deliveries/s (fan-out) | new connections/s "
        "| idle connections per GiB |",
        "|---|---:|---:|---:|---:|",
    ]

    def per_second(scenario: str, loop: str, scale: float = 1e6) -> str:
        s = by.get((scenario, loop, "lexicons"))
        return f"{scale / s['headline']['median']:,.0f}" if s else "–"

    for loop in _order(results["summary"], "loop"):
        fanout = [n for n in _order(results["summary"], "scenario") if n.startswith("fanout")]
        deliveries = " / ".join(per_second(n, loop) for n in fanout) or "–"
        idle = by.get(("idle", loop, "lexicons"))
        # A quick run's few connections may grow the process by no page at all.
        grew = idle is not None and idle["headline"]["median"] > 0
        per_gib = f"{2**20 / idle['headline']['median']:,.0f}" if grew else "–"
        lines.append(
            f"| {loop} | {per_second('echo', loop)} | {deliveries} "
            f"| {per_second('churn', loop, 1e3)} "
            f"| {per_gib} |"
        )
    return "\n".join(lines) + "\n"


def goals(results: dict[str, Any]) -> str:
    """The issue's targets for lexicons, each with the measured median ratio: met or not."""
    by = _by(results["summary"])
    lines = ["#### Targets for lexicons\n", "| loop | scenario | goal | measured | met |"]
    lines.append("|---|---|---|---:|---|")
    for loop in _order(results["summary"], "loop"):
        for prefix, target, ref, bound in GOALS:
            for name in _order(results["summary"], "scenario"):
                if name != prefix and not name.startswith(prefix + "-"):
                    continue
                s = by.get((name, loop, target))
                if s is None or ref not in s["ratios"]:
                    continue
                ratio = s["ratios"][ref]["median"]
                label = TARGETS[ref].label
                if bound > 0:
                    goal, shown, met = f"≤ {bound}x {label}", f"{ratio:.2f}x", ratio <= bound
                else:
                    goal = f"≥ {-bound:g}x cheaper than {label}"
                    shown, met = f"{1 / ratio:.1f}x", 1 / ratio >= -bound
                lines.append(f"| {loop} | {name} | {goal} | {shown} | {'yes' if met else 'NO'} |")
    return "\n".join(lines) + "\n"
