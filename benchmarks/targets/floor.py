"""The floor: the least a Python server on websockets' Sans-I/O protocol can do per message.

One asyncio protocol per connection feeding a ``ServerProtocol``, with lexicons' own I/O
choices: reads into one shared buffer (a BufferedProtocol), frames written by hand
(lexicons' ``text_frame``), a broadcast framed once and the same bytes written to every
member. A message is decoded once, dispatched on its key and encoded once. No validation,
no error handling, no logging, no timeouts: lexicons' cost over this is what the framework
itself costs, since the I/O path is the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from lexicons.network.frames import text_frame

from ..harness import announce
from . import ROOM, TOKEN

decode = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode
rooms: dict[str, set[asyncio.Transport]] = {ROOM: set()}


_READ = memoryview(bytearray(256 * 1024))


class Floor(asyncio.BufferedProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport: asyncio.Transport = transport
        self.proto = ServerProtocol()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ[:nbytes])

    def data_received(self, data: Any) -> None:
        proto = self.proto
        proto.receive_data(data)
        for event in proto.events_received():
            if type(event) is Frame:
                if event.opcode is Opcode.TEXT:
                    ((name, payload),) = decode(event.data).items()
                    SIGNALS[name](self, payload)
            elif isinstance(event, Request):
                if event.headers.get("Token") == TOKEN:
                    proto.send_response(proto.accept(event))
                else:
                    proto.send_response(proto.reject(403, "refused\n"))
        for out in proto.data_to_send():
            if out:
                self.transport.write(out)
            else:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for members in rooms.values():
            members.discard(self.transport)


def echo(link: Floor, payload: Any) -> None:
    link.transport.write(text_frame(encode({"Echo": payload})))


def subscribe(link: Floor, payload: Any) -> None:
    rooms[payload["channel"]].add(link.transport)
    link.transport.write(text_frame(encode({"Subscribe": True})))


def publish(link: Floor, payload: Any) -> None:
    frame = text_frame(encode({"Publish": payload}))
    for transport in rooms[ROOM]:
        transport.write(frame)


SIGNALS = {"Echo": echo, "Subscribe": subscribe, "Publish": publish}


async def main(variant: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Floor, "127.0.0.1", 0, backlog=1024)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()
