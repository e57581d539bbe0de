"""``python -m benchmarks.metrics_cost``: what metrics cost per echo and per delivery.

The network benchmark's echo runs at a few percent of noise on a shared machine, about
the size of what metrics may cost, so this measures in process instead: the benchmark
target's own protocol factory, a stand-in transport (no kernel), and the same frames the
load generator sends. Each round serves the app with metrics off, then on (or the other
way round, alternately), and times the same work in this thread's CPU time; the ratio is
taken per round and its median reported, with the spread::

    python -m benchmarks.metrics_cost                      # 9 rounds
    python -m benchmarks.metrics_cost --rounds 3 --echoes 2000 --subscribers 200

Instructions, which do not depend on the machine's load, can be counted with cachegrind
on one variant at two sizes (the start-up cancels out)::

    valgrind --tool=cachegrind --cache-sim=no python -m benchmarks.metrics_cost \\
        --only on --rounds 1 --echoes 20000 --subscribers 0
    valgrind ... --only on --rounds 1 --echoes 0 --subscribers 1000 --publishes 40
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from .client import client_frame, dialect
from .connection_phases import StandIn, _feed
from .harness import summarize
from .targets import ROOM
from .targets.lexicons_app import app

_ECHO = client_frame(b'{"Echo":{"text":"hello, world"}}')
_SUBSCRIBE = client_frame(b'{"Subscribe":{"channel":"%s"}}' % ROOM.encode())
_PUBLISH = client_frame(b'{"Publish":{"text":"hello, world"}}')


class Counting(StandIn):
    """A stand-in transport that counts what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        super().write(data)
        self.writes += 1


def _open(factory: Callable[[], Any], request: bytes) -> tuple[Any, Counting]:
    transport = Counting()
    protocol = factory()
    protocol.connection_made(transport)
    _feed(protocol, request)
    if not (transport.first or b"").startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake not accepted: {transport.first!r}")
    return protocol, transport


def _cpu(work: Callable[[], None]) -> float:
    start = time.thread_time_ns()
    work()
    return (time.thread_time_ns() - start) / 1000


async def measure(
    metrics: bool, echoes: int, subscribers: int, publishes: int = 20
) -> dict[str, float]:
    """µs of CPU per echo and per delivery, with ``metrics`` on or off."""
    request = dialect("json").request(8000)
    result = {}
    async with app.serve(host="127.0.0.1", port=0, ping_interval=None, metrics=metrics) as run:
        hub = run._hub
        assert hub is not None
        if echoes:
            protocol, transport = _open(hub.protocol, request)

            def echo() -> None:
                for _ in range(echoes):
                    _feed(protocol, _ECHO)

            echo()  # warm-up
            before = transport.writes
            result["echo"] = _cpu(echo) / echoes
            if transport.writes - before != echoes:
                raise RuntimeError("an echo went unanswered")
            protocol.connection_lost(None)
        if subscribers:
            links = [_open(hub.protocol, request) for _ in range(subscribers)]
            for protocol, _ in links:
                _feed(protocol, _SUBSCRIBE)
            publisher = links[0][0]

            def fanout() -> None:
                for _ in range(publishes):
                    _feed(publisher, _PUBLISH)

            fanout()
            result["delivery"] = _cpu(fanout) / (publishes * subscribers)
            for protocol, _ in links:
                protocol.connection_lost(None)
    return result


async def compare(
    rounds: int, echoes: int, subscribers: int, publishes: int, only: str | None
) -> dict[str, Any]:
    variants = [v for v in (False, True) if only is None or only == ("on" if v else "off")]
    figures: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for round_ in range(rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for metrics in order:
            figures[metrics].append(await measure(metrics, echoes, subscribers, publishes))
    report: dict[str, Any] = {}
    for unit in ("echo", "delivery"):
        for metrics in variants:
            values = [f[unit] for f in figures[metrics] if unit in f]
            if values:
                report[f"{unit} µs, metrics {'on' if metrics else 'off'}"] = summarize(values)
        if len(variants) == 2 and figures[True] and unit in figures[True][0]:
            ratios = [
                on[unit] / off[unit] for on, off in zip(figures[True], figures[False], strict=True)
            ]
            report[f"{unit}: on ÷ off"] = summarize(ratios)
            report[f"{unit}: on ÷ off, per round"] = [round(r, 3) for r in ratios]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--echoes", type=int, default=20_000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=20, help="broadcasts to them")
    parser.add_argument("--only", choices=("on", "off"))
    args = parser.parse_args(argv)
    report = asyncio.run(
        compare(args.rounds, args.echoes, args.subscribers, args.publishes, args.only)
    )
    for name, value in report.items():
        if isinstance(value, dict):
            spread = value["spread"] * 50  # ± half of (max - min) / median, as elsewhere
            print(f"{name:32} median {value['median']:.4f}  ±{spread:.1f}%")
        else:
            print(f"{name:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
