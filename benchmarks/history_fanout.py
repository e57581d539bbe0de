"""What history costs a fan-out: a history channel against a plain one, per delivery,
in process and through Redis, in one run.

    python -m benchmarks.history_fanout               # 10, 100 and 1,000 subscribers per process
    python -m benchmarks.history_fanout --quick       # tiny sizes, a few seconds
    python -m benchmarks.history_fanout --loop uvloop
    python -m benchmarks.history_fanout --direct      # the server's own work only, no sockets

It reuses the scale-out benchmark (``benchmarks/redis_fanout.py``): the same target, the
same two server processes pinned to one core, the same load. For each size *S*, four
runs: the in-process broker with a plain room and with a history room (each process on
its own, *S* subscribers and a publisher each), and a Redis broker with a plain room and
with a history room (one publisher on process A reaches the *S* subscribers of each
process). The headline is each process's CPU per delivery with history, and its ratio
to the plain room's in the same setting (the goal in process: at most 1.15x). Writes the
raw numbers to ``benchmarks/results/history_fanout.json``.

``--direct`` measures, in this process and without sockets, what a broadcast costs the
server itself (encoding, numbering, framing, the fan-out loop) per delivery, with the
writes going nowhere: plain and history rounds alternate, many times, so the machine's
noise cancels out. With sockets a delivery also costs its write, so this ratio is an
upper bound of what history adds.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from .harness import cores, machine, save_results, summarize
from .redis_fanout import _fanout, _server, measured_sizes, options, report, run_measure
from .scenarios import Sizes

__all__ = ["main"]

#: The goal: history costs at most this times a plain room per delivery, in process.
GOAL = 1.15


async def _pair(
    args: argparse.Namespace, sizes: Sizes, members: int, redis: str | None, turn: int
) -> dict[str, Any]:
    """A plain room and a history room with the same broker, one after the other (which
    goes first alternates with ``turn``, so a drift of the machine favours neither)."""
    cpu = cores()[0]
    runs = {}
    for history in (False, True) if turn % 2 else (True, False):
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        with (
            _server(cpu, args.loop, redis, namespace, history) as one,
            _server(cpu, args.loop, redis, namespace, history) as two,
        ):
            runs["history" if history else "plain"] = await _fanout(
                [one, two], members, sizes, redis, namespace, history
            )
    for plain, numbered in zip(
        runs["plain"]["processes"], runs["history"]["processes"], strict=True
    ):
        numbered["ratio_to_plain"] = numbered["cpu_per_delivery_us"] / plain["cpu_per_delivery_us"]
    return runs


async def _measure(args: argparse.Namespace, sizes: Sizes, redis: str) -> list[dict[str, Any]]:
    rows = []
    for members in sizes.fanout:
        for turn in range(args.repeat):
            row: dict[str, Any] = {"subscribers_per_process": members}
            for broker, url in (("local", None), ("redis", redis)):
                if args.only in (None, broker):
                    row[broker] = await _pair(args, sizes, members, url, turn)
            rows.append(row)
            _print_row(row)
    return rows


def _print_row(row: dict[str, Any]) -> None:
    figures = []
    for name, broker, index in (
        ("local", "local", 0),
        ("redis A", "redis", 0),
        ("redis B", "redis", 1),
    ):
        runs = row.get(broker)
        if runs is None:
            continue
        plain = runs["plain"]["processes"][index]["cpu_per_delivery_us"]
        numbered = runs["history"]["processes"][index]
        figures.append(
            f"{name} {plain:.2f} -> {numbered['cpu_per_delivery_us']:.2f} us"
            f" ({numbered['ratio_to_plain']:.2f}x)"
        )
    print(f"S={row['subscribers_per_process']:>5}: " + " | ".join(figures), flush=True)


def summarize_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size, the median over the repeated runs of every figure the table shows."""
    summary = []
    for size in sorted({row["subscribers_per_process"] for row in rows}):
        runs = [row for row in rows if row["subscribers_per_process"] == size]

        def median(pick: Any, runs: list[dict[str, Any]] = runs) -> float:
            return float(summarize(pick(row) for row in runs)["median"])

        entry: dict[str, Any] = {"subscribers_per_process": size, "runs": len(runs)}
        for name, broker, index in (("local", "local", 0), ("a", "redis", 0), ("b", "redis", 1)):
            if broker not in runs[0]:
                continue
            entry[f"{name}_plain_us"] = median(
                lambda r, b=broker, i=index: r[b]["plain"]["processes"][i]["cpu_per_delivery_us"]
            )
            entry[f"{name}_history_us"] = median(
                lambda r, b=broker, i=index: r[b]["history"]["processes"][i]["cpu_per_delivery_us"]
            )
            entry[f"{name}_ratio"] = median(
                lambda r, b=broker, i=index: r[b]["history"]["processes"][i]["ratio_to_plain"]
            )
        for broker in [b for b in ("local", "redis") if b in runs[0]]:
            for kind in ("plain", "history"):
                entry[f"{broker}_{kind}_p50_ms"] = median(
                    lambda r, b=broker, k=kind: r[b][k]["p50_ms"]
                )
        summary.append(entry)
    return summary


def markdown(summary: list[dict[str, Any]]) -> str:
    """The table docs/performance.md shows under "History" (medians of the runs)."""
    lines = [
        "| subscribers per process | in process: plain → history | Redis, publisher's "
        "process | Redis, other process | latency p50 plain / history, in process | "
        "latency p50 plain / history, Redis |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        cells = [
            f"{row[f'{n}_plain_us']:.2f} → {row[f'{n}_history_us']:.2f} µs "
            f"({row[f'{n}_ratio']:.2f}x)"
            if f"{n}_ratio" in row
            else "–"
            for n in ("local", "a", "b")
        ]
        latencies = [
            f"{row[f'{b}_plain_p50_ms']:.2f} / {row[f'{b}_history_p50_ms']:.2f} ms"
            if f"{b}_plain_p50_ms" in row
            else "–"
            for b in ("local", "redis")
        ]
        lines.append(
            f"| {row['subscribers_per_process']:,} | " + " | ".join(cells + latencies) + " |"
        )
    return "\n".join(lines)


def direct(
    sizes: tuple[int, ...], rounds: int = 21, broadcasts: int = 3000
) -> list[dict[str, Any]]:
    """Per size, the server's own CPU per delivery, plain and history, and their ratio
    (medians over ``rounds`` alternating rounds)."""
    import time
    from collections import deque
    from types import SimpleNamespace

    from websockets.datastructures import Headers

    from lexicons import History, Server
    from lexicons.connection import Connection

    from .targets import ROOM

    sink = deque(maxlen=0).append  # a write that goes nowhere, in C

    def one(members: int, history: bool) -> float:
        app = Server(debug=False)
        app.channel(ROOM, history=History(1000) if history else None)
        for _ in range(members):
            session = SimpleNamespace(writer=sink, send=sink)
            ws = Connection(session, "127.0.0.1", "/", Headers(), memberships=app.channels)  # type: ignore[arg-type]
            app.connections[ws.pk] = ws
            app.channels[ROOM].subscribe(ws)
        payload = {"text": "hello"}
        started = time.process_time()
        for _ in range(broadcasts):
            app.broadcast({"Publish": payload}, ROOM)
        return (time.process_time() - started) / (broadcasts * members) * 1e6

    rows = []
    for members in sizes:
        plain, numbered, ratios = [], [], []
        for index in range(rounds):
            order = (False, True) if index % 2 else (True, False)
            results = {history: one(members, history) for history in order}
            plain.append(results[False])
            numbered.append(results[True])
            ratios.append(results[True] / results[False])
        row = {
            "subscribers": members,
            "plain_us": float(summarize(plain)["median"]),
            "history_us": float(summarize(numbered)["median"]),
            "ratio": float(summarize(ratios)["median"]),
        }
        print(
            f"S={members:>5}: {row['plain_us']:.3f} -> {row['history_us']:.3f} us per delivery"
            f" ({row['ratio']:.2f}x)",
            flush=True,
        )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = options(argparse.ArgumentParser(prog="python -m benchmarks.history_fanout"))
    parser.add_argument("--direct", action="store_true", help="no sockets: the server's own work")
    parser.add_argument("--only", choices=("local", "redis"), help="one broker only")
    args = parser.parse_args(argv)
    if args.direct:
        sizes_direct = (
            (1, 10, 100, 1000) if not args.sizes else tuple(int(s) for s in args.sizes.split(","))
        )
        rows = direct(sizes_direct, rounds=3 if args.quick else 21)
        if args.output or not args.quick:
            payload = {"machine": machine(), "direct": rows}
            print(f"results written to {save_results('history_direct', payload, args.output)}")
        return 0
    sizes = measured_sizes(parser, args)
    rows = run_measure(args, lambda redis: _measure(args, sizes, redis))
    report(args, "history_fanout", GOAL, summarize_runs(rows), markdown, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
