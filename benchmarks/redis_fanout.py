"""Fan-out across two server processes through Redis, against one process, in one run.

    python -m benchmarks.redis_fanout                 # 10, 100 and 1,000 subscribers per process
    python -m benchmarks.redis_fanout --quick         # tiny sizes, a few seconds
    python -m benchmarks.redis_fanout --redis redis://127.0.0.1:6379/0 --loop uvloop

The server is the lexicons benchmark target (``benchmarks/targets/lexicons_app.py``). For
each size *S* it runs, one after the other:

- **local**: one process, in-process broker, *S* subscribers and the publisher;
- **redis**: two processes sharing a Redis broker, *S* subscribers on each; the publisher
  is on process A, so A pays for publishing and B for receiving from Redis.

The headline is each process's CPU per delivered message (its own deliveries only), and
its ratio to the local figure (the target is at most 1.3x); the latency is from the
publish to the moment the last subscriber, in either process, has the broadcast. Unless
``--redis`` is given, a redis-server of the run's own is started on a free port (so its
CPU is not shared with anything else and the shared one is untouched). Writes the raw
numbers to ``benchmarks/results/redis_fanout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import msgspec

from .client import Client, dialect
from .harness import (
    ServerProcess,
    Window,
    announce,
    cores,
    machine,
    pin,
    raise_fd_limit,
    save_results,
    summarize,
    versions,
)
from .scenarios import (
    SETTLE,
    FanoutLoad,
    Sizes,
    _subscribe_all,
    check,
    close_all,
    connect,
    connect_many,
    percentiles,
)
from .targets import ROOM, loop_factory

__all__ = ["main", "measured_sizes", "options", "report", "run_measure"]

ROOT = Path(__file__).resolve().parent.parent
#: The target: per-delivery CPU through Redis at most this times the local figure.
GOAL = 1.3


# --- the server process --------------------------------------------------------------------


async def _serve(broker: str | None, namespace: str, history: bool = False) -> None:
    """Serve the benchmark target with ``broker`` until SIGTERM (run as a subprocess);
    with ``history``, its room keeps history (its frames carry channel and offset)."""
    from lexicons import History

    from .targets.lexicons_app import app

    if history:
        app.channels.remove(ROOM)
        app.channel(ROOM, history=History(1000))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    settings: dict[str, Any] = {"ping_interval": None}
    if broker:
        settings.update(broker=broker, broker_namespace=namespace)
    async with app.serve(host="127.0.0.1", port=0, **settings) as running:
        announce(running.port)
        await stop.wait()


def _server(
    cpu: int, loop: str, broker: str | None, namespace: str, history: bool = False
) -> ServerProcess:
    argv = [sys.executable, "-m", "benchmarks.redis_fanout", "--serve", "--loop", loop]
    if broker:
        argv += ["--broker", broker, "--namespace", namespace]
    if history:
        argv.append("--history")
    return ServerProcess(argv, cpu=cpu, cwd=ROOT)


@contextmanager
def _own_redis(cpu: int) -> Iterator[str]:
    """A redis-server of this run's own on a free port and core ``cpu``, stopped by its PID."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),  # off the servers' core
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


# --- one measured run ----------------------------------------------------------------------


async def _subscribed_in_redis(url: str, channel: str, processes: int) -> None:
    """Wait until ``processes`` servers are subscribed to ``channel`` in Redis."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        deadline = time.monotonic() + 30
        while (await client.pubsub_numsub(channel))[0][1] < processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{processes} servers did not subscribe to {channel}")
            await asyncio.sleep(0.01)
    finally:
        await client.aclose()


async def _fanout(
    servers: list[ServerProcess],
    members: int,
    sizes: Sizes,
    redis: str | None,
    namespace: str,
    history: bool = False,
) -> dict[str, Any]:
    """``members`` subscribers on each server.

    Through Redis (``redis`` given) one publisher on the first server reaches them all;
    without, every server is on its own, with a publisher of its own. With ``history``
    the servers' room keeps history.
    """
    speaker = dialect("json")
    clients: list[Client] = []
    try:
        groups = []
        for server in servers:
            group = await connect_many(speaker, server.port, members, sizes.connect_concurrency)
            clients += group
            await _subscribe_all(speaker, group, sizes.connect_concurrency)
            groups.append(group)
        if redis is not None:
            await _subscribed_in_redis(redis, f"{namespace}:{ROOM}", len(servers))
            audiences = [[client for group in groups for client in group]]
        else:
            audiences = groups
        loads = []
        for server, audience in zip(servers, audiences, strict=False):
            publisher = await connect(speaker, server.port)
            clients.append(publisher)
            load = FanoutLoad(
                publisher, speaker.frames["Publish"], len(audience), sizes.fanout_window
            )
            for client in audience:
                client.on_frames = load.delivered
            loads.append(load)
        for group in groups:  # check one broadcast in each process
            group[0].keep = True
        await _drive(loads, sizes.warmup)
        for group in groups:
            group[0].keep = False
            if history:
                _check_numbered(group[0].kept[0], {"text": speaker.text})
            else:
                check(speaker, group[0].kept[0], "Publish", {"text": speaker.text})
        await asyncio.sleep(SETTLE)
        with ExitStack() as stack:
            windows = [stack.enter_context(Window(s.pid, s.cpu)) for s in servers]
            await _drive(loads, sizes.duration)
            await asyncio.sleep(SETTLE)
        broadcasts = [load.completed for load in loads] * (len(servers) if redis else 1)
        return {
            "subscribers_per_process": members,
            "broadcasts": broadcasts[0],
            "processes": [
                {
                    "deliveries": members * sent,
                    "cpu_per_delivery_us": w.server_cpu / (members * sent) * 1e6,
                    **w.as_dict(),
                }
                for w, sent in zip(windows, broadcasts, strict=True)
            ],
            **percentiles(loads[0].latencies),
        }
    finally:
        close_all(clients)


def _check_numbered(data: bytes, payload: Any) -> None:
    """Raise unless ``data`` is a history channel's ``Publish`` frame carrying ``payload``."""
    got = msgspec.json.decode(data)
    if got.get("Publish") != payload or got.get("channel") != ROOM or got.get("offset", 0) < 1:
        raise AssertionError(f"expected a numbered Publish {payload!r}, got {data[:120]!r}")


async def _drive(loads: list[FanoutLoad], seconds: float) -> None:
    for load in loads:
        load.start()
    await asyncio.sleep(seconds)
    for load in loads:
        await load.stop()


async def _measure(args: argparse.Namespace, sizes: Sizes, redis: str) -> list[dict[str, Any]]:
    server_cpu, _ = cores()
    rows = []
    for members in sizes.fanout:
        for _ in range(args.repeat):
            namespace = f"bench-{uuid.uuid4().hex[:8]}"
            # Both runs put two server processes on the same core, so both see the same
            # sharing of it; only the broker differs.
            with (
                _server(server_cpu, args.loop, None, namespace) as one,
                _server(server_cpu, args.loop, None, namespace) as two,
            ):
                local = await _fanout([one, two], members, sizes, None, namespace)
            with (
                _server(server_cpu, args.loop, redis, namespace) as a,
                _server(server_cpu, args.loop, redis, namespace) as b,
            ):
                shared = await _fanout([a, b], members, sizes, redis, namespace)
            for process, alone in zip(shared["processes"], local["processes"], strict=True):
                process["ratio_to_local"] = (
                    process["cpu_per_delivery_us"] / alone["cpu_per_delivery_us"]
                )
            row = {"subscribers_per_process": members, "local": local, "redis": shared}
            rows.append(row)
            _print_row(row)
    return rows


def _print_row(row: dict[str, Any]) -> None:
    local, shared = row["local"], row["redis"]
    a, b = shared["processes"]
    print(
        f"S={row['subscribers_per_process']:>5}: local"
        f" {local['processes'][0]['cpu_per_delivery_us']:.2f}"
        f" / {local['processes'][1]['cpu_per_delivery_us']:.2f} us"
        f" | redis A {a['cpu_per_delivery_us']:.2f} us ({a['ratio_to_local']:.2f}x)"
        f" B {b['cpu_per_delivery_us']:.2f} us ({b['ratio_to_local']:.2f}x)"
        f" | p50/p99 local {local['p50_ms']:.2f}/{local['p99_ms']:.2f} ms"
        f" redis {shared['p50_ms']:.2f}/{shared['p99_ms']:.2f} ms",
        flush=True,
    )


def summarize_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size, the median over the repeated runs of every figure the table shows."""
    sizes = sorted({row["subscribers_per_process"] for row in rows})
    summary = []
    for size in sizes:
        runs = [row for row in rows if row["subscribers_per_process"] == size]

        def median(pick: Any, runs: list[dict[str, Any]] = runs) -> float:
            return float(summarize(pick(row) for row in runs)["median"])

        summary.append(
            {
                "subscribers_per_process": size,
                "runs": len(runs),
                "local_us": median(lambda r: r["local"]["processes"][0]["cpu_per_delivery_us"]),
                "a_us": median(lambda r: r["redis"]["processes"][0]["cpu_per_delivery_us"]),
                "a_ratio": median(lambda r: r["redis"]["processes"][0]["ratio_to_local"]),
                "b_us": median(lambda r: r["redis"]["processes"][1]["cpu_per_delivery_us"]),
                "b_ratio": median(lambda r: r["redis"]["processes"][1]["ratio_to_local"]),
                "local_p50_ms": median(lambda r: r["local"]["p50_ms"]),
                "local_p99_ms": median(lambda r: r["local"]["p99_ms"]),
                "redis_p50_ms": median(lambda r: r["redis"]["p50_ms"]),
                "redis_p99_ms": median(lambda r: r["redis"]["p99_ms"]),
            }
        )
    return summary


def markdown(summary: list[dict[str, Any]]) -> str:
    """The table docs/performance.md shows under "Scale-out" (medians of the runs)."""
    lines = [
        "| subscribers per process | in-process broker | Redis: publisher's process | "
        "Redis: other process | latency p50 / p99, in-process | latency p50 / p99, Redis |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        lines.append(
            f"| {row['subscribers_per_process']:,} "
            f"| {row['local_us']:.2f} µs "
            f"| {row['a_us']:.2f} µs ({row['a_ratio']:.2f}x) "
            f"| {row['b_us']:.2f} µs ({row['b_ratio']:.2f}x) "
            f"| {row['local_p50_ms']:.2f} / {row['local_p99_ms']:.2f} ms "
            f"| {row['redis_p50_ms']:.2f} / {row['redis_p99_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = options(argparse.ArgumentParser(prog="python -m benchmarks.redis_fanout"))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--broker", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--history", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        raise_fd_limit()
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            runner.run(_serve(args.broker, args.namespace, args.history))
        return 0

    sizes = measured_sizes(parser, args)
    rows = run_measure(args, lambda redis: _measure(args, sizes, redis))
    report(args, "redis_fanout", GOAL, summarize_runs(rows), markdown, rows)
    return 0


def options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options the fan-out benchmarks share."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--sizes", help="subscribers per process, comma-separated")
    parser.add_argument("--duration", type=float, help="seconds measured per run")
    parser.add_argument("--repeat", type=int, help="runs per size (default 3; 1 with --quick)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    parser.add_argument("--redis", help="use this Redis instead of starting one")
    parser.add_argument("--output", type=Path, help="where to write the JSON results")
    return parser


def measured_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Sizes:
    """The sizes the common options ask for (``--quick``, ``--sizes``, ``--duration``);
    sets ``args.repeat``, and checks that a Redis can be had."""
    sizes = Sizes(fanout=(10, 100, 1000), fanout_window=4, warmup=0.5, duration=2.0)
    if args.quick:
        sizes = Sizes(fanout=(20,), fanout_window=4, warmup=0.05, duration=0.2)
    if args.sizes:
        sizes = Sizes(**{**sizes.__dict__, "fanout": tuple(int(s) for s in args.sizes.split(","))})
    if args.duration:
        sizes = Sizes(**{**sizes.__dict__, "duration": args.duration})
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.redis is None and shutil.which("redis-server") is None:
        parser.error("no redis-server on PATH: install it, or pass --redis URL")
    return sizes


def run_measure(
    args: argparse.Namespace, measure: Callable[[str], Awaitable[list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """Run ``measure(redis_url)`` pinned to the load generator's core, with a Redis of the
    run's own unless ``--redis`` names one."""
    raise_fd_limit()
    pin(os.getpid(), cores()[1])
    with ExitStack() as stack:
        redis = args.redis or stack.enter_context(_own_redis(cores()[1]))
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            return runner.run(measure(redis))


def report(
    args: argparse.Namespace,
    name: str,
    goal: float,
    summary: list[dict[str, Any]],
    table: Callable[[list[dict[str, Any]]], str],
    rows: list[dict[str, Any]],
) -> None:
    """Print the table and write the results (not for a quick run without ``--output``)."""
    print()
    print(table(summary))
    payload = {
        "machine": machine(),
        "versions": versions("lexicons", "redis", "hiredis", "websockets", "msgspec", "uvloop"),
        "loop": args.loop,
        "goal_ratio": goal,
        "summary": summary,
        "runs": rows,
    }
    if args.output or not args.quick:
        print(f"results written to {save_results(name, payload, args.output)}")


if __name__ == "__main__":
    raise SystemExit(main())
