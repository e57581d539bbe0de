"""The figures of one server process, counted in plain ints where the events happen.

A :class:`Meter` is a handful of integer attributes the serving path adds to (an
attribute increment, far cheaper than a locked ``prometheus_client`` counter), and a
:class:`Timing` per signal. Nothing here does I/O: a scrape turns a :class:`Snapshot` of
each process into the exposition format, and :func:`combine` adds up the snapshots of
several worker processes.

Handler latency is sampled: the requests of the first message and then of one message
in ``sample`` are timed, so reading the clock costs nothing on the others (it would cost
more than all the counting).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable

import msgspec

__all__ = [
    "BUCKETS",
    "REASONS",
    "SAMPLE",
    "Histogram",
    "Meter",
    "Snapshot",
    "Timing",
    "Totals",
    "combine",
]

#: Upper bounds (seconds) of the handler latency buckets; ``+Inf`` follows.
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: The requests of one message in this many (a power of two) are timed.
SAMPLE = 16
#: Handshake refusals by reason label; each appears in every scrape, zero or not.
REASONS = ("untrusted", "origin", "gate", "full", "storage", "other")
_REASON = {
    "untrusted address": "untrusted",
    "origin not allowed": "origin",
    "refused by gate": "gate",
    "too many connections": "full",
    "storage unavailable": "storage",
}
#: The label of requests naming no registered signal (unknown names are not labels:
#: a client could make up millions of them).
OTHER = "(unregistered)"


class Timing:
    """One signal's timed requests, bucketed."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        #: Observations per bucket, the last one ``+Inf``.
        self.buckets = [0] * (len(BUCKETS) + 1)
        #: Sum of the observed seconds.
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Record one timed request (bucket bounds are inclusive, as Prometheus's are)."""
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


class Histogram(msgspec.Struct, array_like=True):
    """Per-bucket observation counts (not cumulative; the last is ``+Inf``) and their sum."""

    buckets: list[int]
    total: float

    @property
    def count(self) -> int:
        return sum(self.buckets)


class Snapshot(msgspec.Struct):
    """Every figure of one process at one moment; what workers publish to each other."""

    pid: int
    #: False once the process stopped: its counters still count, its gauges no longer.
    live: bool
    connections: int
    opened: int
    received: int
    sent: int
    broadcasts: int
    deliveries: int
    cut_off: int
    refused: dict[str, int]
    latency: dict[str, Histogram]
    broker_connected: bool
    broker_undelivered: int


class Meter:
    """The counters of one process; the serving path adds to the attributes directly."""

    __slots__ = (
        "opened",
        "received",
        "sent",
        "broadcasts",
        "deliveries",
        "cut_off",
        "refused",
        "timings",
        "other",
        "sample",
    )

    def __init__(self, signals: Iterable[str] = (), *, sample: int = SAMPLE) -> None:
        if sample < 1 or sample & (sample - 1):
            raise ValueError(f"sample: {sample!r} is not a power of two")
        #: Connections admitted.
        self.opened = 0
        #: Complete WebSocket messages received from clients.
        self.received = 0
        #: Messages written to clients (replies, errors, ``ws.send``, deliveries).
        self.sent = 0
        #: Broadcasts published from this process.
        self.broadcasts = 0
        #: Broadcast messages written to this process's subscribers (counted in ``sent``).
        self.deliveries = 0
        #: Connections cut off because their unsent output passed ``max_buffer``.
        self.cut_off = 0
        self.refused = dict.fromkeys(REASONS, 0)
        #: One :class:`Timing` per registered signal; ``other`` for every other name.
        self.timings = {name: Timing() for name in signals}
        self.other = Timing()
        #: One message in ``sample`` has its requests timed.
        self.sample = sample

    def receive(self) -> bool:
        """Count one message received; True when its requests are to be timed."""
        self.received += 1
        return not (self.received - 1) & (self.sample - 1)

    def refuse(self, reason: str) -> None:
        """Count a refused handshake; ``reason`` is the refusal's short reason."""
        self.refused[_REASON.get(reason, "other")] += 1

    def snapshot(
        self, *, connections: int, broker_connected: bool, broker_undelivered: int, live: bool
    ) -> Snapshot:
        """This process's figures now; the gauges and broker state are read by the caller."""
        timings = {**self.timings, OTHER: self.other}
        return Snapshot(
            pid=os.getpid(),
            live=live,
            connections=connections,
            opened=self.opened,
            received=self.received,
            sent=self.sent,
            broadcasts=self.broadcasts,
            deliveries=self.deliveries,
            cut_off=self.cut_off,
            refused=dict(self.refused),
            latency={name: Histogram(list(t.buckets), t.total) for name, t in timings.items()},
            broker_connected=broker_connected,
            broker_undelivered=broker_undelivered,
        )


class Totals(msgspec.Struct):
    """The figures of every process a scrape covers, added up."""

    #: Processes still running (their gauges count).
    processes: int
    connections: int
    opened: int
    received: int
    sent: int
    broadcasts: int
    deliveries: int
    cut_off: int
    refused: dict[str, int]
    latency: dict[str, Histogram]
    #: Running processes whose broker is connected.
    broker_connected: int
    broker_undelivered: int


_COUNTERS = ("opened", "received", "sent", "broadcasts", "deliveries", "cut_off")


def combine(snapshots: Iterable[Snapshot]) -> Totals:
    """Add up processes: counters over all of them (a stopped worker's counts stay, so
    totals never go down), gauges over the live ones only."""
    totals = Totals(0, 0, 0, 0, 0, 0, 0, 0, dict.fromkeys(REASONS, 0), {}, 0, 0)
    for snap in snapshots:
        for name in _COUNTERS:
            setattr(totals, name, getattr(totals, name) + getattr(snap, name))
        for reason, count in snap.refused.items():
            totals.refused[reason] = totals.refused.get(reason, 0) + count
        for signal, histogram in snap.latency.items():
            into = totals.latency.get(signal)
            if into is None:
                totals.latency[signal] = Histogram(list(histogram.buckets), histogram.total)
            else:
                into.buckets = [
                    a + b for a, b in zip(into.buckets, histogram.buckets, strict=True)
                ]
                into.total += histogram.total
        totals.broker_undelivered += snap.broker_undelivered
        if snap.live:
            totals.processes += 1
            totals.connections += snap.connections
            totals.broker_connected += snap.broker_connected
    return totals
