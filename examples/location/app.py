"""Live location feed: publishers send positions; watchers of an area see them move.

Run the server, then feed it simulated walkers and watch one area, in a terminal or on
the page at http://localhost:5000/::

    python examples/location/app.py run
    python examples/location/simulate.py --walkers 20

- ``move {lat, lon}``: a publisher's position, several times a second. It is broadcast
  to the watchers of its area (and of the area it left, so they see it go).
- ``watch {lat, lon}``: subscribe to the area around a point; the reply lists who is
  there now. ``unwatch {area}`` stops.
- Every second an interval task drops positions not updated for ``STALE`` seconds and
  sends each watched area a ``snapshot``, so a watcher that missed updates catches up.
- Positions live in memory only: a position is worthless a minute later.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from lexicons import Connection, Response, Server

CELL = 0.01  # degrees per area side: about 1 km north-south
STALE = 10.0  # seconds without an update before a position is dropped
SNAPSHOT_EVERY = 1.0  # seconds between snapshots

Latitude = Annotated[float, Meta(ge=-90, le=90)]
Longitude = Annotated[float, Meta(ge=-180, le=180)]

app = Server(static=str(Path(__file__).parent / "static"))  # the page: open "/" in a browser


class Position(msgspec.Struct):
    id: str  # the publisher's connection pk
    lat: float
    lon: float
    area: str
    at: float  # wall-clock seconds, so clients can show how fresh it is


positions: dict[str, Position] = {}  # by connection pk


def area_of(lat: float, lon: float) -> str:
    """The grid cell holding a point, as a channel name: ``area:<row>:<column>``."""
    return f"area:{math.floor(lat / CELL)}:{math.floor(lon / CELL)}"


def watched(sv: Server, *areas: str) -> list[str]:
    """The areas among ``areas`` that someone watches (only those have a channel)."""
    return [area for area in dict.fromkeys(areas) if area in sv.channels]


@app.signal
def move(ws: Connection, sv: Server, lat: Latitude, lon: Longitude) -> Response[Position] | None:
    """Record a position and tell the watchers of its area, and of the one it left."""
    old = positions.get(ws.pk)
    position = Position(ws.pk, lat, lon, area_of(lat, lon), time.time())
    positions[ws.pk] = position
    areas = watched(sv, position.area, *([old.area] if old else []))
    # Nobody watching: nothing to send, and no reply either (publishers do not wait).
    return Response(position, areas) if areas else None


@app.signal
def watch(ws: Connection, sv: Server, lat: Latitude, lon: Longitude) -> dict[str, Any]:
    """Subscribe to the area around a point; the reply is who is there now."""
    area = area_of(lat, lon)
    channel = sv.channels.get(area) or sv.channels.create(area)
    channel.subscribe(ws)
    return {"area": area, "positions": [p for p in positions.values() if p.area == area]}


@app.signal
def unwatch(ws: Connection, sv: Server, area: str) -> dict[str, str]:
    channel = sv.channels.get(area)
    if channel is not None:
        channel.unsubscribe(ws)
        if not channel.subscribers:
            sv.channels.remove(area)  # an area has a channel only while watched
    return {"area": area}


@app.on_disconnect
def gone(ws: Connection, sv: Server) -> None:
    position = positions.pop(ws.pk, None)
    if position is not None and watched(sv, position.area):
        sv.broadcast({"gone": {"id": ws.pk, "area": position.area}}, position.area)


@app.task.interval(SNAPSHOT_EVERY)
def snapshot(sv: Server) -> None:
    """Drop stale positions (a publisher that vanished without closing), then resync."""
    now = time.time()
    for pk in [pk for pk, p in positions.items() if now - p.at > STALE]:
        del positions[pk]
    by_area: defaultdict[str, list[Position]] = defaultdict(list)
    for position in positions.values():
        by_area[position.area].append(position)
    for area in [name for name in sv.channels if name.startswith("area:")]:
        if not sv.channels[area].subscribers:  # its last watcher disconnected
            sv.channels.remove(area)
            continue
        sv.broadcast({"snapshot": {"area": area, "positions": by_area[area]}}, area)


if __name__ == "__main__":
    app.run()
