"""The lexicons target: the application a user would write, run with ``debug=False``.

Trust, a handshake header and a gate are configured, as the churn target asks, so the
handshake does what a production one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lexicons import Response, Server

from ..harness import announce, serve_on_uvicorn
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
    """Serve the app: on lexicons' listener, with metrics on (``metrics``) or compression
    on (``compression``), or as an ASGI application on uvicorn (``asgi``), as the
    python-socketio target runs there. MessagePack needs no variant: clients choose it."""
    if variant == "asgi":
        await serve_on_uvicorn(app.asgi, lifespan="on", ws_ping_interval=None)
        return
    options = {"metrics": variant == "metrics", "compression": variant == "compression"}
    async with app.serve(host="127.0.0.1", port=0, ping_interval=None, **options) as running:
        announce(running.port)
        await asyncio.Event().wait()
