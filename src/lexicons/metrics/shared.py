"""Figures shared between ``--workers`` processes: one small file per process.

The supervisor makes a directory before it forks; each worker writes a
:class:`~lexicons.metrics.meter.Snapshot` of its meter there every :data:`PUBLISH_EVERY`
seconds and once more when it stops. Whichever worker a scrape reaches reads its own
meter live and the others' files, and adds them up, so one scrape sees every worker.

Why files rather than prometheus_client's multiprocess mode: that mode writes every
increment into a memory-mapped file, which is the per-event cost the meter exists to
avoid. A snapshot a second costs a few microseconds; the price is that the other
workers' figures are up to a second old. A file is replaced atomically (written beside,
then renamed), so a reader never sees half of one. A worker that stopped keeps its
file: its counters stay in the totals (they never go down when a worker is restarted),
its gauges no longer count. A worker killed outright never says it stopped; its file
stops being refreshed, and after :data:`STALE_AFTER` seconds it counts as stopped.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import msgspec

from .meter import Snapshot

__all__ = ["PUBLISH_EVERY", "STALE_AFTER", "SharedFigures"]

logger = logging.getLogger("lexicons")

#: Seconds between two snapshots of one worker.
PUBLISH_EVERY = 1.0
#: A live worker's file older than this belongs to a process that was killed.
STALE_AFTER = 5 * PUBLISH_EVERY

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Snapshot).decode


class SharedFigures:
    """This process's file in the shared directory, and the other processes' files."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid()
        self.path = self.directory / f"{self.pid}.json"

    def publish(self, snapshot: Snapshot) -> None:
        """Replace this process's file with ``snapshot``."""
        temporary = self.directory / f".{self.pid}.tmp"
        try:
            temporary.write_bytes(_encode(snapshot))
            os.replace(temporary, self.path)
        except OSError as exc:  # a full disk must not stop serving; the scrape lags
            logger.warning("metrics: cannot write %s: %s", self.path, exc)

    def others(self) -> list[Snapshot]:
        """The last snapshot of every other process that ever published here."""
        found = []
        now = time.time()
        try:
            paths = list(self.directory.glob("*.json"))
        except OSError:
            return []
        for path in paths:
            if path == self.path:
                continue
            try:
                data = path.read_bytes()
                age = now - path.stat().st_mtime
                snapshot = _decode(data)
            except (OSError, msgspec.DecodeError) as exc:
                logger.warning("metrics: skipped %s: %s", path, exc)
                continue
            if snapshot.live and age > STALE_AFTER:
                snapshot.live = False
            found.append(snapshot)
        return found
