"""python-socketio's AsyncServer, on aiohttp or on uvicorn: the usual choice today.

The same application with events and a room. Keepalive pings are pushed out of the run
(the client does not answer them) and uvicorn's per-connection log lines are off, as
lexicons' are with ``debug=False``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from ..harness import announce, serve_on_uvicorn
from . import ROOM, TOKEN


def application(async_mode: str) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode=async_mode, ping_interval=3600, ping_timeout=3600)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> bool:
        return bool(environ.get("HTTP_TOKEN") == TOKEN)

    @sio.event
    async def Echo(sid: str, data: Any) -> None:
        await sio.emit("Echo", data, to=sid)

    @sio.event
    async def Subscribe(sid: str, data: Any) -> None:
        await sio.enter_room(sid, data["channel"])
        await sio.emit("Subscribe", True, to=sid)

    @sio.event
    async def Publish(sid: str, data: Any) -> None:
        await sio.emit("Publish", data, room=ROOM)

    return sio


async def main(variant: str) -> None:
    if variant == "aiohttp":
        await _aiohttp()
    else:
        await serve_on_uvicorn(socketio.ASGIApp(application("asgi")), lifespan="off")


async def _aiohttp() -> None:
    from aiohttp import web

    web_app = web.Application()
    application("aiohttp").attach(web_app)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    announce(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()
