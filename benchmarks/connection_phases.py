"""``python -m benchmarks.connection_phases``: what one connection costs, phase by phase.

The churn scenario measures a whole server, kernel and event loop included, so a change
of a microsecond in lexicons hides in the noise. This runs the protocol classes in
process instead: each connection is made by the server's own protocol factory, fed the
benchmark client's handshake and close frame through a stand-in transport that only
records, and dropped, with the time of each step summed over many connections::

    python -m benchmarks.connection_phases                  # 30,000 connections each
    python -m benchmarks.connection_phases --connections 500

Both lexicons (the benchmark target: trust, a header and a gate) and the Sans-I/O floor
run in the same process, so their difference is lexicons' own work per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

from websockets.frames import Opcode

from .client import client_frame, dialect
from .targets import floor
from .targets.lexicons_app import app

#: The steps of one connection, in order.
PHASES = ("create", "connection_made", "handshake", "close frame", "eof", "connection_lost")

_CLOSE = client_frame(struct.pack("!H", 1000), Opcode.CLOSE)
_PEER = ("127.0.0.1", 40000)


class StandIn(asyncio.Transport):
    """A transport that accepts every call, keeps the first bytes written, sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.first: bytes | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return _PEER if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: Any) -> None:
        if self.first is None:
            self.first = bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _feed(protocol: Any, data: bytes) -> None:
    buffer = protocol.get_buffer(-1)
    buffer[: len(data)] = data
    protocol.buffer_updated(len(data))


def measure(factory: Callable[[], Any], request: bytes, connections: int) -> dict[str, float]:
    """Microseconds per connection spent in each phase (after a warm-up).

    Raises RuntimeError unless the handshake is accepted, so a refusal cannot pass for
    a cheap connection.
    """
    totals = [0] * len(PHASES)
    clock = time.perf_counter_ns
    transport = StandIn()
    for i in range(connections + connections // 10):
        t0 = clock()
        protocol = factory()
        t1 = clock()
        protocol.connection_made(transport)
        t2 = clock()
        _feed(protocol, request)
        t3 = clock()
        _feed(protocol, _CLOSE)
        t4 = clock()
        protocol.eof_received()
        t5 = clock()
        protocol.connection_lost(None)
        t6 = clock()
        if i == 0 and not (transport.first or b"").startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake not accepted: {transport.first!r}")
        if i >= connections // 10:
            for index, spent in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                totals[index] += spent
    return {phase: total / connections / 1000 for phase, total in zip(PHASES, totals, strict=True)}


async def compare(connections: int) -> dict[str, dict[str, float]]:
    """``{target: {phase: µs}}`` for the floor and lexicons, in this process."""
    request = dialect("json").request(8000)
    async with app.serve(host="127.0.0.1", port=0, ping_interval=None) as running:
        hub = running._hub
        assert hub is not None
        return {
            "floor": measure(floor.Floor, request, connections),
            "lexicons": measure(hub.protocol, request, connections),
        }


def table(results: dict[str, dict[str, float]]) -> str:
    rows = ["| target | " + " | ".join(PHASES) + " | total |", "|---" * (len(PHASES) + 2) + "|"]
    for target, phases in results.items():
        cells = " | ".join(f"{phases[p]:.2f}" for p in PHASES)
        rows.append(f"| {target} | {cells} | {sum(phases.values()):.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.connection_phases")
    parser.add_argument("--connections", type=int, default=30_000)
    args = parser.parse_args(argv)
    results = asyncio.run(compare(args.connections))
    print("µs per connection, in process (stand-in transport, no kernel):\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
