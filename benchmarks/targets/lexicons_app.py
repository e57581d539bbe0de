"""The lexicons target: the application a user would write, run with ``debug=False``.

Trust, a handshake header and a gate are configured, as the churn target asks, so the
handshake does what a production one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lexicons import Response, Server

from ..harness import announce
from . import ROOM, TOKEN

app = Server(debug=False, trust=["127.0.0.0/8"], gate=lambda results: all(results))
app.channel(ROOM)


@app.header
def Token(header: str) -> bool:
    return header == TOKEN


@app.signal
def Echo(text: str) -> dict[str, str]:
    return {"text": text}


@app.signal
def Subscribe(ws: Any, sv: Any, channel: str) -> bool:
    sv.channels[channel].subscribe(ws)
    return True


@app.signal
def Publish(text: str) -> Response:
    return Response({"text": text}, ROOM)


async def main(variant: str) -> None:
    """Serve the app; the ``metrics`` variant with Prometheus metrics on."""
    metrics = variant == "metrics"
    async with app.serve(host="127.0.0.1", port=0, ping_interval=None, metrics=metrics) as running:
        announce(running.port)
        await asyncio.Event().wait()
