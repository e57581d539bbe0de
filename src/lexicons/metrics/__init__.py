"""Prometheus metrics: counted in plain ints on the serving path, exposed at scrape time.

:mod:`~lexicons.metrics.meter` counts (no I/O), :mod:`~lexicons.metrics.serving` hooks
the counting into a running server and answers ``GET /metrics``,
:mod:`~lexicons.metrics.shared` adds up ``--workers`` processes, and
:mod:`~lexicons.metrics.exposition` (the only module that imports ``prometheus_client``)
writes the exposition format.
"""

from __future__ import annotations

from .meter import Meter, Snapshot, Totals, combine
from .serving import PATH, MeteredApplication, MeteredSession, ServerMetrics, require_client

__all__ = [
    "PATH",
    "Meter",
    "MeteredApplication",
    "MeteredSession",
    "ServerMetrics",
    "Snapshot",
    "Totals",
    "combine",
    "require_client",
]
