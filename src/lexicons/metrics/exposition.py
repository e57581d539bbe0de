"""The Prometheus side: a ``prometheus_client`` collector reading the meters at scrape time.

The counting is lexicons' own (plain ints, :mod:`lexicons.metrics.meter`); the official
client turns the figures into the text or OpenMetrics format, chosen from the scraper's
``Accept`` header, so the exposition is exactly what Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .meter import BUCKETS, SAMPLE, Totals

__all__ = ["FiguresCollector", "render"]

#: ``name: (help, attribute of Totals)`` of the plain counters.
_COUNTERS = {
    "lexicons_connections_opened": ("WebSocket connections admitted.", "opened"),
    "lexicons_messages_received": ("WebSocket messages received from clients.", "received"),
    "lexicons_messages_sent": (
        "WebSocket messages written to clients: replies, errors, ws.send and broadcast "
        "deliveries.",
        "sent",
    ),
    "lexicons_broadcasts": ("Broadcasts published (each counted once).", "broadcasts"),
    "lexicons_deliveries": (
        "Broadcast messages written to subscribers (one per subscriber per broadcast).",
        "deliveries",
    ),
    "lexicons_slow_consumers": (
        "Connections cut off because their unsent output passed max_buffer.",
        "cut_off",
    ),
    "lexicons_broker_undelivered": (
        "Broadcasts that reached local subscribers only: the broker was unreachable.",
        "broker_undelivered",
    ),
}
_BOUNDS = [repr(bound) for bound in BUCKETS] + ["+Inf"]


class FiguresCollector(Collector):
    """Yields lexicons' metrics from ``figures()``, called once per scrape."""

    def __init__(self, figures: Callable[[], Totals]) -> None:
        self.figures = figures

    def describe(self) -> list[Metric]:
        return []  # registering must not read the figures

    def collect(self) -> Iterator[Metric]:
        totals = self.figures()
        yield GaugeMetricFamily(
            "lexicons_processes",
            "Server processes whose figures this scrape adds up (workers still running).",
            totals.processes,
        )
        yield GaugeMetricFamily(
            "lexicons_connections", "Open WebSocket connections.", totals.connections
        )
        for name, (documentation, attribute) in _COUNTERS.items():
            yield CounterMetricFamily(name, documentation, getattr(totals, attribute))
        refused = CounterMetricFamily(
            "lexicons_handshakes_refused",
            "WebSocket handshakes refused, by reason: untrusted address, origin, gate "
            "(headers), full (max_connections), storage (durable commit failed).",
            labels=["reason"],
        )
        for reason, count in totals.refused.items():
            refused.add_metric([reason], count)
        yield refused
        latency = HistogramMetricFamily(
            "lexicons_handler_seconds",
            f"Time handling a signal request, sampled: the requests of one message in "
            f"{SAMPLE} are timed, so _count is the number timed, not the number handled.",
            labels=["signal"],
        )
        for signal, histogram in totals.latency.items():
            cumulative, buckets = 0, []
            for bound, observed in zip(_BOUNDS, histogram.buckets, strict=True):
                cumulative += observed
                buckets.append((bound, float(cumulative)))
            latency.add_metric([signal], buckets, histogram.total)
        yield latency
        yield GaugeMetricFamily(
            "lexicons_broker_connected",
            "Server processes whose broker is connected (the in-process broker always is).",
            totals.broker_connected,
        )


def render(collector: FiguresCollector, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type, in the format the ``Accept`` header asks for."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
