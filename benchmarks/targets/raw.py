"""Raw websockets: what users write by hand today with the library's asyncio API.

The same work per message as lexicons: decode once, dispatch on the key, encode once,
and ``broadcast`` for the channel. ``variant`` picks the JSON library (msgspec or the
standard library's json); the event loop is the one the process runs.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from ..harness import announce
from . import ROOM, TOKEN

TRUSTED = ipaddress.ip_network("127.0.0.0/8")
rooms: dict[str, set[ServerConnection]] = {ROOM: set()}


def codec(variant: str) -> tuple[Callable[[Any], Any], Callable[[Any], str]]:
    """``(loads, dumps)`` of the JSON library; dumps returns text, for text frames."""
    if variant == "json":
        return json.loads, json.dumps
    decode = msgspec.json.Decoder().decode
    encode = msgspec.json.Encoder().encode
    return decode, lambda obj: encode(obj).decode()


def check(connection: ServerConnection, request: Request) -> Response | None:
    """Trust list and header check, as a hand-written server does them."""
    if ipaddress.ip_address(connection.remote_address[0]) not in TRUSTED:
        return connection.respond(403, "untrusted address\n")
    if request.headers.get("Token") != TOKEN:
        return connection.respond(403, "refused\n")
    return None


async def main(variant: str) -> None:
    loads, dumps = codec(variant)

    async def echo(ws: ServerConnection, payload: Any) -> None:
        await ws.send(dumps({"Echo": payload}))

    async def subscribe(ws: ServerConnection, payload: Any) -> None:
        rooms[payload["channel"]].add(ws)
        await ws.send(dumps({"Subscribe": True}))

    async def publish(ws: ServerConnection, payload: Any) -> None:
        broadcast(rooms[ROOM], dumps({"Publish": payload}))

    signals = {"Echo": echo, "Subscribe": subscribe, "Publish": publish}

    async def handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                ((name, payload),) = loads(message).items()
                await signals[name](ws, payload)
        finally:
            for members in rooms.values():
                members.discard(ws)

    async with serve(handler, "127.0.0.1", 0, process_request=check, ping_interval=None) as server:
        announce(server.sockets[0].getsockname()[1])
        await server.serve_forever()
